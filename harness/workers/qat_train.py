"""Worker: quantization-aware training with torchao (training environment), see harness/compress/qat.py.

Output: a float checkpoint whose decoder linears were trained under the int4 fake quantizer (torchao's
convert step has removed the quantizers), and a record: the loss curve, tokens, time, peak RSS, held-out
CE / KL to the full-precision model before and after, and the fake-quantizer configuration.
"""

from __future__ import annotations

import os
import re
import time
from importlib import metadata
from pathlib import Path

import torch

from harness.distill.kd_train import train_logit_kd
from harness.distill.train_common import load_model, peak_rss_gib, save_student, token_stream, windows
from harness.distill.train_io import KDRecipe, TeacherCacheRef
from harness.proc import worker_main


def ignored(fqn: str, patterns: list[str]) -> bool:
    """llm-compressor's ignore semantics: `re:` patterns match from the start of the name, others exactly
    (or as the name's last component)."""
    for p in patterns:
        if p.startswith("re:") and re.match(p[3:], fqn):
            return True
        if fqn == p or fqn.endswith("." + p):
            return True
    return False


def work(cfg: dict) -> dict:
    from torchao.quantization import quantize_
    from torchao.quantization.qat import IntxFakeQuantizeConfig, QATConfig
    from transformers import AutoTokenizer

    torch.set_num_threads(os.cpu_count() or 1)
    t0 = time.monotonic()
    model = load_model(cfg["source"])
    teacher = load_model(cfg["source"]).eval()
    # scales in bf16, as compressed-tensors stores them, so the grid trained on is the grid served
    wcfg = IntxFakeQuantizeConfig(
        # torch.int4 is in the compress env's torch, which this runs in; mypy reads the serving env's stubs
        torch.int4 if cfg["bits"] == 4 else torch.int8,  # type: ignore[attr-defined]
        group_size=cfg["group_size"],
        is_symmetric=cfg["symmetric"],
        scale_precision=torch.bfloat16,
    )
    targets = []

    def keep(mod, fqn: str) -> bool:
        ok = isinstance(mod, torch.nn.Linear) and ".layers." in fqn and not ignored(fqn, cfg["ignore"])
        if ok:
            targets.append(fqn)
        return ok

    quantize_(model, QATConfig(weight_config=wcfg, step="prepare"), filter_fn=keep)
    tok = AutoTokenizer.from_pretrained(cfg["source"])
    train, held = windows(token_stream(cfg["corpus"], tok), cfg["spec"]["seq_len"], cfg["spec"]["seed"])
    record = {
        "tool": "torchao QAT",
        "fake_quantizer": {
            "dtype": f"int{cfg['bits']}",
            "group_size": cfg["group_size"],
            "symmetric": cfg["symmetric"],
            "scale_precision": "bfloat16",
        },
        "fake_quantized_linears": len(targets),
        "hyper_parameters": cfg["spec"],
    }
    cache = TeacherCacheRef(folder=cfg["teacher_cache"], fingerprint=cfg["teacher_fingerprint"])
    trained = train_logit_kd(
        KDRecipe.model_validate(cfg["spec"]), cache, model, teacher, train, held, what="QAT training"
    )
    record.update(trained.model_dump(mode="json"))
    quantize_(model, QATConfig(step="convert"))  # back to plain nn.Linear with the trained weights
    left = [n for n, m in model.named_modules() if "FakeQuantized" in type(m).__name__]
    if left:
        raise SystemExit(f"torchao convert left fake-quantized modules: {left[:3]}")
    record["wall_s"] = round(time.monotonic() - t0, 2)
    record["peak_rss_gib"] = round(peak_rss_gib(), 3)
    record["versions"] = {p: metadata.version(p) for p in ("torch", "torchao", "transformers")}
    save_student(model, cfg["source"], Path(cfg["out"]), {"dqbench_qat": True, "source": cfg["source"]})
    return record


if __name__ == "__main__":
    worker_main(work, result="record")

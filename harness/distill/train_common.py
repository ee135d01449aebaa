"""What the training worker's two trainers share (runs in the training environment: torch, transformers):
the device and whether bf16 is native on it, loading, deriving and saving a student, the token windows, the
held-out pass, moving the teacher off the GPU, and the record of what a run held in memory.

Imported by harness/distill/distill_worker.py (inside its `work`), kd_train.py (our logit-KD loop, also run
by the QAT worker) and trl_train.py (TRL's SFT / GKD trainers); it imports neither of them.
"""

from __future__ import annotations

import contextlib
import json
import resource
import shutil
from pathlib import Path
from typing import Any

import torch

from harness.distill.budget import HELDOUT_WINDOWS
from harness.distill.loss import kl_full
from harness.distill.train_io import Heldout, MemoryUsed
from harness.models.arch import pruned_layers

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def bf16_is_native() -> bool:
    """bf16 matmuls run natively on a GPU and on CPUs with AVX512-BF16 or AMX; anywhere else torch emulates
    them (an AVX2 EPYC: bf16 linear 5.6x slower than fp32, `harness doctor`), so training there stays fp32."""
    if DEVICE == "cuda":
        return True
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


BF16 = bf16_is_native()


def compute_note(weights_dtype: str) -> str:
    if weights_dtype == "bf16":
        return f"{DEVICE}, bf16 weights"
    return f"{DEVICE}, fp32 weights, " + ("bf16 autocast" if BF16 else "fp32 (bf16 is emulated on this CPU)")


def autocast():
    # fp32 master weights, bf16 matmuls: 1.5x faster per step on an AVX512-BF16 CPU (9.1 -> 5.9 s for
    # 4 x 256 tokens, pruned SmolLM2), and the usual mixed precision on a GPU; plain fp32 where bf16 is
    # emulated (the teacher cache for 24 x 4 x 256 tokens ran > 6 min in emulated bf16 on an AVX2 EPYC)
    return torch.autocast(DEVICE, dtype=torch.bfloat16) if BF16 else contextlib.nullcontext()


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def load_model(path: str, weights_dtype: str = "fp32", trust_remote_code: bool = False):
    from transformers import AutoModelForCausalLM

    # fp32 master weights by default: bf16 weights lose updates smaller than their resolution unless the
    # optimizer rounds stochastically (the spec pairs weights_dtype bf16 with adamw_8bit, which does)
    dtype = torch.bfloat16 if weights_dtype == "bf16" else torch.float32
    # repository code only where the caller says so (harness/plan/trust.py): distillation passes False
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, trust_remote_code=trust_remote_code)
    # transformers wraps `to` in a decorator whose stub drops the device argument from the signature
    return model.to(DEVICE)  # type: ignore[arg-type]


def prune(model, keep_every: int) -> list[int]:
    """Depth-prune in place: keep the layers harness.models.arch.pruned_layers picks, renumbered."""
    layers = model.model.layers
    keep = pruned_layers(len(layers), keep_every)
    model.model.layers = torch.nn.ModuleList([layers[i] for i in keep])
    for new, layer in enumerate(model.model.layers):
        # the KV cache is indexed by layer_idx: stale indices would read another layer's cache
        layer.self_attn.layer_idx = new
    cfg = model.config
    if getattr(cfg, "layer_types", None):
        cfg.layer_types = [cfg.layer_types[i] for i in keep]
    cfg.num_hidden_layers = len(keep)
    return keep


def memory_record(weights_dtype: str, optimizer_name: str, teacher_offloaded: bool, optimizer, model) -> MemoryUsed:
    """What the run held, read from the objects that ran, to compare with the plan's estimate
    (harness/distill/training_memory.py). `weights_dtype` is what was asked: the model says what ran."""
    out = MemoryUsed(
        weights_dtype={torch.bfloat16: "bf16", torch.float32: "fp32"}.get(model.dtype, str(model.dtype)),
        optimizer=optimizer_name,
        optimizer_class=type(optimizer).__name__,
        gradient_checkpointing=bool(getattr(model, "is_gradient_checkpointing", False)),
        teacher_offloaded=teacher_offloaded,
    )
    if DEVICE == "cuda":
        out.peak_gpu_gib = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    return out


def offload(model, where: str) -> None:
    """Move a model between the GPU and host RAM (the teacher while the loop does not call it)."""
    model.to(where)
    if DEVICE == "cuda" and where == "cpu":
        torch.cuda.empty_cache()


def token_stream(corpus: str, tokenizer) -> list[int]:
    eos = tokenizer.eos_token_id
    ids: list[int] = []
    with open(corpus) as f:
        for line in f:
            ids.extend(tokenizer(json.loads(line)["text"], add_special_tokens=False)["input_ids"])
            ids.append(eos)
    return ids


def windows(ids: list[int], seq_len: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Contiguous non-overlapping windows: (training windows in seeded order, held-out windows)."""
    n = len(ids) // seq_len
    if n <= HELDOUT_WINDOWS:
        raise SystemExit(f"training corpus has {len(ids)} tokens: too few for windows of {seq_len}")
    w = torch.tensor(ids[: n * seq_len]).view(n, seq_len)
    train, held = w[:-HELDOUT_WINDOWS], w[-HELDOUT_WINDOWS:]
    g = torch.Generator().manual_seed(seed)
    return train[torch.randperm(len(train), generator=g)], held


@torch.no_grad()
def heldout(student, teacher, held: torch.Tensor) -> Heldout:
    """Cross-entropy of the student and KL(teacher || student) at T=1 on the held-out windows."""
    student.eval()
    ce, kl, tce = [], [], []
    for i in range(0, len(held), 2):
        x = held[i : i + 2].to(DEVICE)
        with autocast():
            s = student(input_ids=x).logits.float()
            t = teacher(input_ids=x).logits.float()
        y = x[:, 1:].reshape(-1)
        ce.append(torch.nn.functional.cross_entropy(s[:, :-1].reshape(-1, s.size(-1)), y).item())
        tce.append(torch.nn.functional.cross_entropy(t[:, :-1].reshape(-1, t.size(-1)), y).item())
        kl.append(kl_full(s[:, :-1], t[:, :-1], 1.0).mean().item())
    student.train()
    return Heldout(
        ce=sum(ce) / len(ce),
        kl_to_teacher=sum(kl) / len(kl),
        teacher_ce=sum(tce) / len(tce),
        tokens=int(held.numel()),
    )


def save_student(model, tokenizer_dir: str, out: Path, manifest: dict[str, Any]) -> None:
    """The checkpoint as it is served: bf16 safetensors, the tokenizer files, dqbench-manifest.json."""
    out.mkdir(parents=True, exist_ok=True)
    model.to(torch.bfloat16)
    model.config.dtype = torch.bfloat16
    model.save_pretrained(out, safe_serialization=True)
    for name in (
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "chat_template.jinja",
        "vocab.json",
        "merges.txt",
        "tokenizer.model",
    ):
        if (Path(tokenizer_dir) / name).is_file():
            shutil.copy2(Path(tokenizer_dir) / name, out / name)
    (out / "dqbench-manifest.json").write_text(json.dumps(manifest, indent=2))

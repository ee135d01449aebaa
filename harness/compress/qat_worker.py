"""Worker: quantization-aware training with torchao, see harness/compress/qat.py. Started by qat.py in the
compress/training environment (`settings.with_python(settings.compress_python)`: torchao, and the training
loop of harness/distill/kd_train.py).

`QatJob` in; a float checkpoint at `out` whose decoder linears were trained under the int4 fake quantizer
(torchao's convert step has removed the quantizers), and `QatRecord` back (kept as qat-record.json): the loss
curve, tokens, time, peak RSS, held-out CE / KL to the full-precision model before and after, and the
fake-quantizer configuration. Importable without torch or torchao.
"""

from __future__ import annotations

import os
import re
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from harness.jobs import Job, Record


class SelfStudent(BaseModel):
    """The model trains against its own full-precision copy (the distill loop's student spec: no derivation)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["self"] = "self"


class QatTraining(BaseModel):
    """The training hyper-parameters, in the shape of a student spec: the distill loop
    (harness/distill/kd_train.py train_logit_kd) reads them as its `spec`, and the record keeps them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_steps: int
    max_tokens: int | None = None
    max_minutes: int | float | None = None  # as the matrix wrote it (an int stays an int in the record)
    learning_rate: float = 2e-5
    batch_size: int = 4
    seq_len: int = 256
    alpha: float = 1.0  # 1: pure KD; 0: plain CE fine-tuning
    temperature: float = 1.0
    top_k: int = 64
    warmup_steps: int = 5
    weight_decay: float = 0.0
    seed: int
    feature_weight: float = 0.0
    student: SelfStudent = SelfStudent()


class TeacherFingerprint(BaseModel):
    """What the teacher top-k cache is keyed on besides the windows (harness/distill/kd_train.py teacher_cache)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    checkpoint: str  # harness.compress.base.checkpoint_ident of the source
    data: dict[str, Any]  # the training text's manifest fingerprint (harness/distill/data.TrainData)


class FakeQuantizer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dtype: str  # "int4"
    group_size: int | Literal["channel"] | None
    symmetric: bool
    scale_precision: str


class QatRecord(Record):
    tool: str  # "torchao QAT"
    fake_quantizer: FakeQuantizer
    fake_quantized_linears: int
    hyper_parameters: QatTraining
    # what the distill loop (harness/distill/kd_train.py train_logit_kd) reports, flat; its parts are that
    # loop's own and kept as it writes them
    loss_curve: list[dict[str, Any]]
    steps: int
    compute: str
    memory: dict[str, Any]
    feature_kd: dict[str, Any] | None
    tokens_seen: int
    train_s: float
    tokens_per_s: float | None
    stopped_by: str
    teacher_cache: dict[str, Any] | None
    heldout_before: dict[str, Any]
    heldout_after: dict[str, Any]
    loss: str
    # this worker's again
    wall_s: float
    peak_rss_gib: float
    versions: dict[str, str]


class QatJob(Job[QatRecord]):
    worker = "harness.compress.qat_worker:work"

    source: str  # checkpoint folder
    trust_remote_code: bool = False  # run the checkpoint's own code (the plan allows it only with --trust-remote-code)
    out: str  # the trained float checkpoint (a temporary name the parent renames into place)
    bits: Literal[4, 8]
    group_size: int | Literal["channel"] | None
    symmetric: bool
    ignore: list[str]  # llm-compressor's patterns: the export keeps these in full precision too
    corpus: str  # the training text (JSON lines with "text")
    teacher_cache: str  # folder of the teacher top-k caches, shared
    teacher_fingerprint: TeacherFingerprint
    spec: QatTraining


def ignored(fqn: str, patterns: list[str]) -> bool:
    """llm-compressor's ignore semantics: `re:` patterns match from the start of the name, others exactly
    (or as the name's last component)."""
    for p in patterns:
        if p.startswith("re:") and re.match(p[3:], fqn):
            return True
        if fqn == p or fqn.endswith("." + p):
            return True
    return False


def work(job: QatJob) -> QatRecord:
    import torch
    from torchao.quantization import quantize_
    from torchao.quantization.qat import IntxFakeQuantizeConfig, QATConfig
    from transformers import AutoTokenizer

    from harness.distill.kd_train import train_logit_kd
    from harness.distill.train_common import load_model, peak_rss_gib, save_student, token_stream, windows
    from harness.distill.train_io import KDRecipe, TeacherCacheRef

    torch.set_num_threads(os.cpu_count() or 1)
    t0 = time.monotonic()
    model = load_model(job.source, trust_remote_code=job.trust_remote_code)
    teacher = load_model(job.source, trust_remote_code=job.trust_remote_code).eval()
    # scales in bf16, as compressed-tensors stores them, so the grid trained on is the grid served
    wcfg = IntxFakeQuantizeConfig(
        # torch.int4 is in the compress env's torch, which this runs in; mypy reads the serving env's stubs
        torch.int4 if job.bits == 4 else torch.int8,  # type: ignore[attr-defined]
        group_size=job.group_size,
        is_symmetric=job.symmetric,
        scale_precision=torch.bfloat16,
    )
    targets = []

    def keep(mod: Any, fqn: str) -> bool:
        ok = isinstance(mod, torch.nn.Linear) and ".layers." in fqn and not ignored(fqn, job.ignore)
        if ok:
            targets.append(fqn)
        return ok

    quantize_(model, QATConfig(weight_config=wcfg, step="prepare"), filter_fn=keep)
    tok = AutoTokenizer.from_pretrained(job.source, trust_remote_code=job.trust_remote_code)
    train, held = windows(token_stream(job.corpus, tok), job.spec.seq_len, job.spec.seed)
    # the distill loop's own inputs: the recipe (the spec's hyper-parameters) and where and under what key
    # the teacher top-k logits are cached
    recipe = KDRecipe.model_validate(job.spec.model_dump(mode="json"))
    cache = TeacherCacheRef(folder=job.teacher_cache, fingerprint=job.teacher_fingerprint.model_dump(mode="json"))
    trained = train_logit_kd(recipe, cache, model, teacher, train, held, what="QAT training").model_dump(mode="json")
    quantize_(model, QATConfig(step="convert"))  # back to plain nn.Linear with the trained weights
    left = [n for n, m in model.named_modules() if "FakeQuantized" in type(m).__name__]
    if left:
        raise SystemExit(f"torchao convert left fake-quantized modules: {left[:3]}")
    record = QatRecord(
        tool="torchao QAT",
        fake_quantizer=FakeQuantizer(
            dtype=f"int{job.bits}", group_size=job.group_size, symmetric=job.symmetric, scale_precision="bfloat16"
        ),
        fake_quantized_linears=len(targets),
        hyper_parameters=job.spec,
        **trained,
        wall_s=round(time.monotonic() - t0, 2),
        peak_rss_gib=round(peak_rss_gib(), 3),
        versions={p: metadata.version(p) for p in ("torch", "torchao", "transformers")},
    )
    save_student(model, job.source, Path(job.out), {"dqbench_qat": True, "source": job.source})
    return record

"""Worker: derive a student from its teacher and train it (runs in the training environment: torch, TRL),
started by the student cache (harness/distill/base.py, Distiller.build).

`DistillJob` in (the student spec, the teacher folder, the corpus, the teacher generations, where to save);
the student checkpoint written at `out` (bf16 safetensors + the teacher's tokenizer + dqbench-manifest.json);
`DistillRecord` back: loss curve, tokens seen, wall time, peak RSS, hyper-parameters, what stopped training,
and held-out cross-entropy / KL to the teacher before and after (the parent writes it as the student's
record.json).

`untrained` is derived and saved only; `logit_kd` runs our loop (harness/distill/kd_train.py: the loss is
ours, harness/distill/loss.py); `sft` and `gkd` run TRL's trainers (harness/distill/trl_train.py); what the
two share is in harness/distill/train_common.py. Importable without torch (the parent builds the job with it).
"""

from __future__ import annotations

import os
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from harness.distill.train_io import (
    CurvePoint,
    FeatureKD,
    GenerationsUsed,
    Heldout,
    MemoryUsed,
    Sparse,
    TeacherCacheInfo,
)
from harness.jobs import Job, Record
from harness.spec.sources import LocalModel
from harness.spec.students import DistillSpec, LogitKD, PruneStudent, UntrainedStudent


class StudentOrigin(Sparse):
    """Where the student came from: the teacher's layers it kept, or the checkpoint it was loaded from."""

    kind: str
    keep_every: int | None = None
    kept_layers: list[int] | None = None
    source: str | None = None


class DistillRecord(Record, Sparse):
    """What training did. The parts a kind does not produce are left out (an untrained student has no loss
    curve; only logit_kd has a teacher cache and feature KD, only sft / gkd have generations)."""

    kind: str
    student: StudentOrigin
    student_params: int
    hyper_parameters: dict[str, Any]  # the spec trained (its JSON dump; a hub student with its snapshot path)
    student_key: str
    teacher: str
    versions: dict[str, str]  # package -> version
    # trained students
    teacher_params: int | None = None
    corpus_tokens: int | None = None
    loss_curve: list[CurvePoint] | None = None
    steps: int | None = None
    compute: str | None = None
    memory: MemoryUsed | None = None
    feature_kd: FeatureKD | None = None
    tokens_seen: int | None = None
    train_s: float | None = None
    tokens_per_s: float | None = None
    stopped_by: str | None = None
    teacher_cache: TeacherCacheInfo | None = None
    heldout_before: Heldout | None = None
    heldout_after: Heldout | None = None
    loss: str | None = None
    generations: GenerationsUsed | None = None
    on_policy_tokens: int | float | None = None
    # every run
    wall_s: float
    peak_rss_gib: float


class DistillJob(Job[DistillRecord]):
    worker = "harness.distill.distill_worker:work"

    spec: DistillSpec
    student_path: str | None = None  # a hub student: its downloaded snapshot folder (trained from there)
    teacher: str  # the teacher's checkpoint folder
    out: str  # where the student checkpoint goes
    corpus: str  # the training text (JSONL of {"text"}): logit_kd's windows, every kind's held-out windows
    generations: str | None = None  # sft / gkd: the teacher's answers (harness/distill/generate.py)
    teacher_cache: str  # the folder of the teacher top-k logit cache, shared by every student and run
    teacher_fingerprint: dict[str, Any]  # the teacher source's fingerprint: the cache's key and the manifest's
    student_key: str


def derive_student(job: DistillJob):
    """The student model, where it came from, and the folder of its tokenizer."""
    from harness.distill.train_common import load_model, prune

    spec = job.spec
    src = spec.student
    wdt = "fp32" if isinstance(spec, UntrainedStudent) else spec.weights_dtype
    if isinstance(src, PruneStudent):
        model = load_model(job.teacher, wdt)
        kept = prune(model, src.keep_every)
        return model, StudentOrigin(kind="prune", keep_every=src.keep_every, kept_layers=kept), job.teacher
    path = src.path if isinstance(src, LocalModel) else job.student_path or src.id
    return load_model(path, wdt), StudentOrigin(kind=src.kind, source=path), path


def hyper_parameters(job: DistillJob) -> dict[str, Any]:
    spec = job.spec.model_dump(mode="json")
    if job.student_path is not None:
        spec["student"]["path"] = job.student_path
    return spec


def fields_set(part: Sparse) -> dict[str, Any]:
    """A trainer's report as record fields (the record is flat, as its JSON always was)."""
    return {name: getattr(part, name) for name in part.model_fields_set}


def work(job: DistillJob) -> DistillRecord:
    import torch

    from harness.distill.train_common import load_model, peak_rss_gib, save_student, token_stream, windows

    torch.set_num_threads(os.cpu_count() or 1)
    spec, kind = job.spec, job.spec.kind
    t0 = time.monotonic()
    student, origin, tok_dir = derive_student(job)
    record: dict[str, Any] = {
        "kind": kind,
        "student": origin,
        "student_params": sum(p.numel() for p in student.parameters()),
        "hyper_parameters": hyper_parameters(job),
        "student_key": job.student_key,
        "teacher": job.teacher,
        "versions": {p: metadata.version(p) for p in ("torch", "transformers", "trl")},
    }
    if not isinstance(spec, UntrainedStudent):
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(tok_dir, trust_remote_code=False)  # no repository code
        teacher = load_model(job.teacher, spec.weights_dtype).eval()
        record["teacher_params"] = sum(p.numel() for p in teacher.parameters())
        ids = token_stream(job.corpus, tokenizer)
        train, held = windows(ids, spec.seq_len, spec.seed)
        record["corpus_tokens"] = len(ids)
        if isinstance(spec, LogitKD):
            from harness.distill.kd_train import train_logit_kd
            from harness.distill.train_io import KDRecipe, TeacherCacheRef

            cache = TeacherCacheRef(folder=job.teacher_cache, fingerprint=job.teacher_fingerprint)
            record.update(fields_set(train_logit_kd(KDRecipe.of(spec), cache, student, teacher, train, held)))
        else:
            from harness.distill.trl_train import train_trl

            if job.generations is None:
                raise SystemExit(f"{kind} trains on the teacher's generations, but the job names none")
            record.update(fields_set(train_trl(spec, job.generations, student, teacher, tokenizer, held)))
    record["wall_s"] = round(time.monotonic() - t0, 2)
    record["peak_rss_gib"] = round(peak_rss_gib(), 3)
    save_student(
        student,
        tok_dir,
        Path(job.out),
        {
            "dqbench_student": job.student_key,
            "kind": kind,
            "origin": origin.model_dump(mode="json"),
            "teacher": job.teacher_fingerprint,
        },
    )
    return DistillRecord(**record)

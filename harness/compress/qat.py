"""Quantization-aware training (`qat`): fine-tune with fake-quantized weights, then export.

1. `harness.compress.qat_worker` (QatJob, in the compress/training environment): torchao's QAT
   (`QATConfig` + `IntxFakeQuantizeConfig`) puts the method's grid -- int4, per group, symmetric:
   scale = absmax / 7.5, as compressed-tensors computes it -- on every decoder linear, and the model
   trains against its own full-precision self (logit KD, the teacher's top-k cached; LLM-QAT's data-free
   recipe, here on the students' training text). torchao's convert step removes the fake quantizers,
   leaving weights the grid was trained on.
2. The export is llm-compressor's round-to-nearest with the same scheme (W4A16, group, symmetric), so
   the served compressed-tensors checkpoint holds exactly the grid values QAT saw; vLLM serves it as it
   serves any RTN cell. The comparison that matters is with the post-training cells of the same scheme.

Options (`methods.NAME.options`): steps (required), learning_rate (2e-5), batch_size (4), seq_len (256),
alpha (1.0: pure KD; 0 = plain CE fine-tuning), temperature (1.0), top_k (64), max_minutes, warmup_steps (5).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from harness.compress.base import (
    build_artefact,
    checkpoint_ident,
    method_of,
    option_number,
    run_compress_worker,
)
from harness.compress.llmcompressor import LLMCompressor
from harness.compress.qat_worker import QatJob, QatRecord, QatTraining, TeacherFingerprint
from harness.errors import StageError
from harness.result import Artefact

if TYPE_CHECKING:
    from harness.plan.cell import CellPlan
    from harness.settings import Settings
    from harness.workspace import CellPaths


OPTIONS = {
    "steps": int,
    "learning_rate": float,
    "batch_size": int,
    "seq_len": int,
    "alpha": float,
    "temperature": float,
    "top_k": int,
    "max_minutes": float,
    "warmup_steps": int,
}
ZERO_OK = {"alpha", "warmup_steps"}  # 0 is meaningful: plain CE fine-tuning, no warm-up


class QAT(LLMCompressor):
    kind = "qat"
    precisions = ("int4",)
    calibrated = False
    recipe_kind = "rtn"

    def plan_problems(self, cell, arch) -> list[str]:
        problems = super().plan_problems(cell, arch)
        opts = cell.method_spec.options
        unknown = sorted(set(opts) - set(OPTIONS))
        if unknown:
            problems.append(f"methods.{cell.method}.options: unknown {unknown} (qat takes {sorted(OPTIONS)})")
        if "steps" not in opts:
            problems.append(f"methods.{cell.method}.options.steps is required (the QAT budget in optimizer steps)")
        for k, t in OPTIONS.items():
            v = opts.get(k)
            if v is None:
                continue
            number = isinstance(v, (int, float)) and not isinstance(v, bool)
            in_range = number and (v >= 0 if k in ZERO_OK else v > 0)
            if not in_range or (t is int and not float(v).is_integer()):
                problems.append(f"methods.{cell.method}.options.{k}: got {v!r}; expected a positive {t.__name__}")
        if cell.method_spec.group_size is None:
            problems.append(f"methods.{cell.method}: set group_size (64 for SmolLM2) or channel")
        return problems

    def compress(self, cell: CellPlan, source: Path | str, paths: CellPaths, settings: Settings) -> Artefact:
        workdir = paths.work
        from harness.distill.data import TrainData

        python = settings.compress_python
        if not python:
            raise StageError("compress", "the training environment is not set up: run ./dq setup")
        spec = method_of(cell)
        opts = spec.options

        def num(name: str, default: float) -> float:
            return option_number(spec, name, default)

        max_minutes = opts.get("max_minutes")  # as written: an int stays an int in the record
        if isinstance(max_minutes, bool) or not isinstance(max_minutes, int | float | None):
            raise StageError("compress", f"methods options.max_minutes: expected a number, got {max_minutes!r}")

        data = TrainData(settings)
        data.prepare(paths.log("prepare"))
        trained = workdir / "qat-float"
        record_path = workdir / "qat-record.json"
        log = paths.log("qat")

        def run(tmp: Path, env: dict[str, str]) -> QatRecord:
            job = QatJob(
                source=str(source),
                trust_remote_code=cell.model.trust_remote_code,
                out=str(tmp),
                bits=4,
                group_size=spec.group_size,
                symmetric=self.symmetric,
                ignore=list(spec.ignore),
                corpus=str(data.corpus_path()),
                teacher_cache=str(settings.home / "teacher-cache"),
                teacher_fingerprint=TeacherFingerprint(
                    checkpoint=checkpoint_ident(source), data=data.fingerprint().model_dump(mode="json")
                ),
                spec=QatTraining(
                    max_steps=int(num("steps", 0)),
                    max_tokens=None,
                    max_minutes=max_minutes,
                    learning_rate=num("learning_rate", 2e-5),
                    batch_size=int(num("batch_size", 4)),
                    seq_len=int(num("seq_len", 256)),
                    alpha=num("alpha", 1.0),
                    temperature=num("temperature", 1.0),
                    top_k=int(num("top_k", 64)),
                    warmup_steps=int(num("warmup_steps", 5)),
                    weight_decay=0.0,
                    seed=spec.seed,
                    feature_weight=0.0,
                ),
            )
            return run_compress_worker(job, log, settings.with_python(python), env, timeout=12 * 3600)

        built = build_artefact(
            trained, record_path, run, QatRecord, what=f"the QAT weights of cell {cell.cell_id} ({trained})", log=log
        )
        art = super().compress(cell, trained, paths, settings)
        art.record["qat"] = built.record.model_dump(mode="json")
        art.record["export"] = "llm-compressor round-to-nearest on the QAT weights (the grid QAT trained on)"
        return art

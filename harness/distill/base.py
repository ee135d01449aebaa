"""The distiller plugin contract and its student cache.

A plugin declares what it needs (teacher generations, a shared vocabulary) and what the plan must check;
`build` returns the student checkpoint, training it in a worker subprocess only when no finished copy
exists (harness/distill/distill_worker.py, a `DistillJob` run in the training environment; its
`DistillRecord` becomes the student's record.json). Students are cached by content (teacher weights,
recipe, data), not by cell: the student's own cell and its quantized cells share one training run. One
trainer per key: the build holds `students/<key>.lock` (a second cell waits, says whom for, then reuses the
student), trains into a unique temporary folder, writes `.complete` last (every file with its size) and
renames the folder into place (harness/locks.py). A student whose files do not match its `.complete` is
trained again; what a killed trainer left is removed by the next one, after waiting for a training stage
that outlived its parent.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from harness.distill.distill_worker import DistillJob
from harness.errors import StageError
from harness.locks import (
    BUILDER_LOCK_ENV,
    build_once,
    builder_lock,
    file_sizes,
    listed_present,
    read_json,
    wait_reporter,
)
from harness.proc import run_worker, write_json_atomic

if TYPE_CHECKING:
    from harness.distill.data import DataFingerprint, TrainingData
    from harness.models.arch import ArchInfo
    from harness.plan.cell import CellPlan
    from harness.settings import Settings

# Bump when the training code changes what a given recipe produces: cached students are then retrained.
TRAIN_CODE_VERSION = 1
# Fields that name or route a student but do not change what training produces.
NOT_RECIPE = {"name", "methods", "cost"}
COMPLETE = ".complete"  # the student folder's manifest, written last: every file with its size


def student_complete(folder: Path) -> bool:
    """A cached student is used only when every file its `.complete` lists is there with its size. A
    `.complete` from before sizes were recorded is empty: then the checkpoint and the record must exist."""
    marker = folder / COMPLETE
    if not marker.is_file():
        return False
    if marker.stat().st_size == 0:
        return (
            (folder / "model" / "config.json").is_file()
            and (folder / "record.json").is_file()
            and any((folder / "model").glob("*.safetensors"))
        )
    return listed_present(folder, read_json(marker))


@dataclass(frozen=True)
class Student:
    path: Path  # checkpoint folder (config.json, safetensors, tokenizer)
    key: str
    # what training did: loss curve, tokens, wall time, peak memory, hyper-parameters (the record.json as
    # stored: a DistillRecord's JSON, or what an older trainer wrote)
    record: dict[str, Any]
    reused: bool  # True when a finished copy was found (this cell did not train it)


class Distiller:
    kind: ClassVar[str]
    trains: ClassVar[bool] = True
    needs_generations: ClassVar[bool] = False  # the teacher must answer a prompt set first (served by vLLM)
    same_vocab: ClassVar[bool] = True  # compares teacher and student logits token by token
    job_type: ClassVar[type[DistillJob]] = DistillJob  # what trains it (a test swaps in a slow stand-in)

    def __init__(self, spec) -> None:
        self.spec = spec

    # ------------------------------------------------------------------ plan
    def plan_problems(self, cell: "CellPlan", teacher: "ArchInfo | None", student: "ArchInfo | None") -> list[str]:
        s = self.spec
        problems = []
        if self.same_vocab and teacher and student and teacher.vocab_size != student.vocab_size:
            problems.append(
                f"students[{s.name}] ({s.kind}) matches logits token by token, but the student's "
                f"vocabulary ({student.vocab_size}) differs from the teacher's ({teacher.vocab_size}); "
                f"use kind: sft, which trains on the teacher's generated text"
            )
        if s.student.kind == "prune" and teacher and teacher.num_layers <= s.student.keep_every:
            problems.append(
                f"students[{s.name}].student.keep_every {s.student.keep_every} leaves one of "
                f"{teacher.num_layers} layers; use a smaller keep_every"
            )
        return problems

    # ------------------------------------------------------------------ cache keys
    def recipe(self) -> dict:
        # defaults left out: a field added later (at its default) must not retrain every cached student
        d = self.spec.model_dump(mode="json", exclude=NOT_RECIPE, exclude_defaults=True)
        return d | {"student": self.spec.student.model_dump(mode="json")}

    # teacher_fp: the teacher source's fingerprint (ModelSourceContract.fingerprint), hashed as it is
    def student_key(self, teacher_fp: dict[str, Any], data_fp: DataFingerprint) -> str:
        ident = {
            "teacher": teacher_fp,
            "recipe": self.recipe(),
            "data": data_fp.model_dump(mode="json"),
            "code": TRAIN_CODE_VERSION,
        }
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]

    def generation_params(self) -> dict:
        s = self.spec
        return {
            "prompts": s.prompts,
            "num_prompts": s.num_prompts,
            "max_new_tokens": s.max_new_tokens,
            "temperature": s.generation_temperature,
            "seed": s.seed,
        }

    def generations_path(self, teacher_fp: dict[str, Any], data_fp: DataFingerprint, settings: "Settings") -> Path:
        ident = {"teacher": teacher_fp, "gen": self.generation_params(), "data": data_fp.model_dump(mode="json")}
        key = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
        return settings.home / "generations" / f"{key}.jsonl"

    # ------------------------------------------------------------------ build
    def is_built(self, teacher_fp: dict[str, Any], data: "TrainingData", settings: "Settings") -> bool:
        key = self.student_key(teacher_fp, data.fingerprint())
        return student_complete(settings.home / "students" / key)

    def build(
        self,
        cell: "CellPlan",
        teacher_dir: str,
        teacher_fp: dict[str, Any],
        data: "TrainingData",
        settings: "Settings",
        log: Path,
        generations: Path | None = None,
    ) -> Student:
        python = settings.compress_python
        if not python:
            raise StageError(
                "distill",
                "the training environment is not set up: run ./dq setup (it builds "
                "requirements/compress.txt, which holds torch and TRL) or set "
                "DQBENCH_COMPRESS_PYTHON",
            )
        key = self.student_key(teacher_fp, data.fingerprint())
        final = settings.home / "students" / key

        student_path = None
        if self.spec.student.kind == "hub":  # downloaded first; trained from its revision's snapshot folder
            from harness.models.sources import HubSource

            hub_student = HubSource(self.spec.student, settings)
            hub_student.prepare(log)
            student_path = hub_student.resolve()

        def train(tmp: Path) -> None:
            tmp.mkdir(parents=True)
            job = self.job_type(
                spec=self.spec,
                student_path=student_path,
                teacher=str(teacher_dir),
                out=str(tmp / "model"),
                corpus=str(data.corpus_path()),
                generations=str(generations) if generations else None,
                teacher_cache=str(settings.home / "teacher-cache"),
                teacher_fingerprint=teacher_fp,
                student_key=key,
            )
            write_json_atomic(tmp / "config.json", job.model_dump(mode="json"))  # what it was trained from
            env = {"TRL_EXPERIMENTAL_SILENCE": "1", BUILDER_LOCK_ENV: str(builder_lock(tmp))}
            record = run_worker(
                job,
                log,
                settings.with_python(python),
                stage="distill",
                timeout=12 * 3600,
                env={"HF_HUB_OFFLINE": "1", **env} if settings.offline else env,
            )
            if not (tmp / "model" / "config.json").is_file():
                raise StageError("distill", f"the training worker exited without a student in {tmp}")
            write_json_atomic(tmp / "record.json", record.model_dump(mode="json"))
            write_json_atomic(tmp / COMPLETE, {"key": key, "sizes": file_sizes(tmp, skip=(COMPLETE,))})

        trained = build_once(
            final,
            what=f"student {self.spec.name} ({final})",
            valid=student_complete,
            build=train,
            on_wait=wait_reporter(log),
        )
        return Student(final / "model", key, json.loads((final / "record.json").read_text()), not trained)


class Untrained(Distiller):
    kind = "untrained"
    trains = False
    same_vocab = False


class LogitKD(Distiller):
    kind = "logit_kd"

    def plan_problems(self, cell, teacher, student) -> list[str]:
        problems = super().plan_problems(cell, teacher, student)
        s = self.spec
        if s.feature_weight > 0 and teacher and student:
            from harness.distill.features import layer_map, map_problems

            mapping = layer_map(
                s.feature_layers,
                s.student.kind,
                getattr(s.student, "keep_every", None),
                teacher.num_layers,
                student.num_layers,
            )
            problems += map_problems(mapping, teacher.num_layers, student.num_layers, s.name)
        if s.feature_layers and not s.feature_weight:
            problems.append(
                f"students[{s.name}].feature_layers is set but feature_weight is 0; set feature_weight "
                f"> 0 or drop feature_layers"
            )
        return problems


class SFT(Distiller):
    kind = "sft"
    needs_generations = True
    same_vocab = False  # trains on text: any tokenizer


class GKD(Distiller):
    kind = "gkd"
    needs_generations = True  # the off-policy share (1 - lmbda) trains on the teacher's answers

"""The compress stage's typed jobs and records (harness/compress/*_worker.py): a job round-trips through the
JSON the child reads, a renamed or unknown field is refused, every worker module imports without a heavy
backend (the parent builds its job with it), and the records the workers wrote before they were typed
(tests/fixtures/compress: real runs of the old workers; the legacy one in that worker's shape, no environment
here runs it) read as their record type and write back byte for byte, so artefacts cached before are reused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from harness.compress.base import Calibration, read_record
from harness.compress.gguf_worker import GgufJob, GgufRecord
from harness.compress.legacy_worker import LegacyJob, LegacyRecord
from harness.compress.llmc_worker import LlmcJob, LlmcRecord
from harness.compress.qat_worker import QatJob, QatRecord, QatTraining, TeacherFingerprint
from harness.jobs import Job, Record
from harness.proc import write_json_atomic
from harness.worker import read_job
from tests.conftest import REPO

FIXTURES = REPO / "tests" / "fixtures" / "compress"
CAL = Calibration(source="pydoc", samples=4, seq_len=64, seed=0)

JOBS: list[Job] = [
    LlmcJob(source="/m", out="/w/.model.1.tmp", precision="int4", kind="gptq", group_size=32, calibration=CAL),
    LlmcJob(source="/m", out="/o", precision="fp8", kind="rtn", static=True, ignore=["re:x"], calibration=CAL),
    GgufJob(
        source="/m", out="/o.gguf", type="Q4_K_M", tools="/t", imatrix=True, calibration=CAL, workdir="/w", base="/b"
    ),
    LegacyJob(tool="autoawq", source="/m", out="/o", group_size=128, calibration=CAL),
    QatJob(
        source="/m",
        out="/o",
        bits=4,
        group_size=32,
        symmetric=True,
        ignore=["lm_head"],
        corpus="/c.jsonl",
        teacher_cache="/tc",
        teacher_fingerprint=TeacherFingerprint(checkpoint="/m|[]", data={"version": 1, "files": {"a": 2}}),
        spec=QatTraining(max_steps=2, max_minutes=30, seed=0),
    ),
]


@pytest.mark.parametrize("job", JOBS, ids=lambda j: type(j).__name__)
def test_a_job_round_trips_through_the_file_the_child_reads(job, tmp_path):
    from harness.proc import write_job

    write_job(job, tmp_path / "job.json")
    assert read_job(tmp_path / "job.json") == job
    assert type(job).model_validate_json(job.model_dump_json()) == job


@pytest.mark.parametrize("job", JOBS, ids=lambda j: type(j).__name__)
def test_a_renamed_or_unknown_field_is_refused(job):
    data = job.model_dump(mode="json")
    with pytest.raises(ValidationError, match="extra"):
        type(job).model_validate({**data, "no_such_field": 1})
    renamed = {("record" if k == "out" else k): v for k, v in data.items()}  # the old config's extra key
    with pytest.raises(ValidationError):
        type(job).model_validate(renamed)
    with pytest.raises(ValidationError, match="frozen"):
        job.out = "/elsewhere"


def test_qat_hyper_parameters_keep_the_shape_the_distill_loop_reads():
    spec = QatTraining(max_steps=2, max_minutes=30, seed=0).model_dump(mode="json")
    assert list(spec) == [
        "max_steps",
        "max_tokens",
        "max_minutes",
        "learning_rate",
        "batch_size",
        "seq_len",
        "alpha",
        "temperature",
        "top_k",
        "warmup_steps",
        "weight_decay",
        "seed",
        "feature_weight",
        "student",
    ]
    assert spec["max_minutes"] == 30 and isinstance(spec["max_minutes"], int) and spec["student"] == {"kind": "self"}
    # the teacher top-k cache's key: the same JSON the untyped config carried, so cached logits are reused
    data = {"version": 3, "files": {"corpus.jsonl": [123, "ab12"]}}
    fp = TeacherFingerprint(checkpoint="/m|[('model.safetensors', 1, 2)]", data=data).model_dump(mode="json")
    assert json.dumps(fp, sort_keys=True) == json.dumps(
        {"checkpoint": "/m|[('model.safetensors', 1, 2)]", "data": data}, sort_keys=True
    )


def test_every_worker_module_imports_without_a_heavy_backend():
    heavy = ["torch", "torchao", "transformers", "llmcompressor", "datasets", "numpy", "awq", "auto_gptq", "gguf"]
    modules = sorted(f"harness.compress.{p.stem}" for p in (REPO / "harness" / "compress").glob("*_worker.py"))
    assert len(modules) == 4
    code = "import sys, json\n" + "".join(f"import {m}\n" for m in modules)
    code += f"print(json.dumps([m for m in {heavy!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert json.loads(out.stdout) == []


RECORDS: list[tuple[str, type[Record]]] = [
    ("llmc-rtn-int4.json", LlmcRecord),
    ("llmc-gptq-int4.json", LlmcRecord),
    ("llmc-awq-int4.json", LlmcRecord),
    ("llmc-rtn-mixed.json", LlmcRecord),
    ("llmc-rtn-fp8.json", LlmcRecord),
    ("llmc-qat-export.json", LlmcRecord),
    ("gguf-q8_0.json", GgufRecord),
    ("gguf-q4_k_m-imatrix.json", GgufRecord),
    ("legacy-autoawq.json", LegacyRecord),
    ("qat.json", QatRecord),
]


@pytest.mark.parametrize(("name", "record_type"), RECORDS, ids=[n for n, _ in RECORDS])
def test_a_record_written_before_reads_and_writes_back_byte_for_byte(name, record_type, tmp_path):
    old = FIXTURES / name
    rec = read_record(old, record_type)
    assert rec is not None
    write_json_atomic(tmp_path / name, rec.model_dump(mode="json"))  # as build_artefact writes it
    assert (tmp_path / name).read_bytes() == old.read_bytes()


def test_records_say_what_was_used():
    gguf = read_record(FIXTURES / "gguf-q4_k_m-imatrix.json", GgufRecord)
    q8 = read_record(FIXTURES / "gguf-q8_0.json", GgufRecord)
    assert gguf is not None and q8 is not None
    assert not isinstance(gguf.calibration, str) and gguf.calibration.used_for == "imatrix"
    assert gguf.timings.imatrix_s and q8.timings.imatrix_s is None and q8.calibration.startswith("none")
    assert "imatrix_s" not in q8.model_dump()["timings"]
    rtn = read_record(FIXTURES / "llmc-rtn-int4.json", LlmcRecord)
    assert rtn is not None and rtn.calibration == "none (data-free round-to-nearest)"
    assert read_record(FIXTURES / "qat.json", LlmcRecord) is None  # another worker's record is not this one's
    assert read_record(Path("/nonexistent/record.json"), LlmcRecord) is None

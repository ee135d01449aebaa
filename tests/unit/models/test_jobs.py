"""The model sources' worker jobs (harness/models/download_worker.py, dequantize_worker.py) cross the process
boundary as JSON: they round-trip, and a renamed or unknown field is refused rather than ignored."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from harness.jobs import Job
from harness.models.dequantize_worker import Dequantized, DequantizeJob
from harness.models.download_worker import Download, DownloadJob, HubRefusal, Snapshot

JOBS = [
    DownloadJob(repo="org/m"),
    DownloadJob(repo="org/m", revision="v1"),
    DequantizeJob(gguf="/tmp/x/m.gguf", out="/tmp/x"),
    DequantizeJob(gguf="/tmp/x/m.gguf", out="/tmp/x", dtype="float16"),
]


@pytest.mark.parametrize("job", JOBS, ids=lambda j: type(j).__name__)
def test_a_job_round_trips_and_refuses_an_unknown_field(job: Job):
    again = type(job).model_validate_json(job.model_dump_json())
    assert again == job
    with pytest.raises(ValidationError):
        type(job).model_validate({**job.model_dump(), "renamed": 1})


def test_jobs_name_their_worker_and_record():
    assert DownloadJob.record_type() is Download and DownloadJob.short_name() == "download_worker"
    assert DequantizeJob.record_type() is Dequantized and DequantizeJob.short_name() == "dequantize_worker"


def test_a_download_record_is_a_snapshot_or_a_refusal():
    ok = Download(snapshot=Snapshot(commit="c" * 40, path="/s", files={"config.json": 2}, bytes=2))
    no = Download(refusal=HubRefusal(kind="gated", detail="GatedRepoError: ...", token=False))
    for rec in (ok, no):
        assert Download.model_validate_json(rec.model_dump_json()) == rec
    with pytest.raises(ValidationError):
        HubRefusal(kind="teapot", detail="", token=False)  # type: ignore[arg-type]


def test_the_worker_modules_import_without_their_backends():
    """The parent imports the job classes: torch, transformers and huggingface_hub load in the worker only."""
    import json
    import subprocess
    import sys

    heavy = ["torch", "transformers", "huggingface_hub", "numpy"]
    code = (
        "import sys, json\n"
        "import harness.models.download_worker, harness.models.dequantize_worker, harness.plan.sensitivity_worker\n"
        "import harness.models.hub, harness.models.sources, harness.models.embedded, harness.plan.sensitivity\n"
        f"print(json.dumps([m for m in {heavy!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []

"""A stand-in for harness/distill/distill_worker.py in student-cache tests: `SlowDistillJob` is the real
`DistillJob` with its worker pointed here. Journals each run (DQ_TEST_JOURNAL), writes a checkpoint slowly
(DQ_TEST_PAUSE seconds between config.json and the weights) and returns a record naming the process that
trained (its pid, in `versions`), which the parent writes as the student's record.json."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from harness.distill.distill_worker import DistillJob, DistillRecord, StudentOrigin


class SlowDistillJob(DistillJob):
    worker = "tests.fakes.slow_distill_worker:work"


def work(job: SlowDistillJob) -> DistillRecord:
    with open(os.environ["DQ_TEST_JOURNAL"], "a") as f:
        f.write(f"{os.getpid()} {job.out}\n")
    out = Path(job.out)
    out.mkdir(parents=True)
    (out / "config.json").write_text(json.dumps({"num_hidden_layers": 2}))
    time.sleep(float(os.environ.get("DQ_TEST_PAUSE", "1.0")))
    (out / "model.safetensors").write_bytes(b"w" * 4096)
    return DistillRecord(
        kind=job.spec.kind,
        student=StudentOrigin(kind=job.spec.student.kind),
        student_params=0,
        hyper_parameters=job.spec.model_dump(mode="json"),
        student_key=job.student_key,
        teacher=job.teacher,
        versions={"pid": str(os.getpid())},
        steps=3,
        wall_s=0.0,
        peak_rss_gib=0.0,
    )

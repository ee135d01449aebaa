"""A stand-in for harness.workers.distill in student-cache tests: journals each run (DQ_TEST_JOURNAL), writes
a checkpoint slowly (DQ_TEST_PAUSE seconds between config.json and the weights) and the record last."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from harness.proc import worker_config


def main() -> None:
    cfg = worker_config()
    with open(os.environ["DQ_TEST_JOURNAL"], "a") as f:
        f.write(f"{os.getpid()} {cfg['out']}\n")
    out = Path(cfg["out"])
    out.mkdir(parents=True)
    (out / "config.json").write_text(json.dumps({"num_hidden_layers": 2}))
    time.sleep(float(os.environ.get("DQ_TEST_PAUSE", "1.0")))
    (out / "model.safetensors").write_bytes(b"w" * 4096)
    Path(cfg["record"]).write_text(json.dumps({"steps": 3, "student_key": cfg["student_key"], "pid": os.getpid()}))


if __name__ == "__main__":
    main()

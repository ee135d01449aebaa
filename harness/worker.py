"""The child side of every worker: `python -m harness.worker --job FILE --record FILE`.

One entry point for all of them (harness/jobs.py has the protocol): take the builder lock the parent named
(first, before any heavy import: a worker lives in its own process group and may outlive a parent killed
with SIGKILL, and the next builder waits for it before it removes what it was writing, harness/locks.py),
read and validate the job, log to the file the parent opened (stderr timestamped, stdout line-buffered so
the log reads in order), run the job's worker function, check that it returned the job's record type, and
write the record atomically (a half-written record is never read as one). Progress goes through
harness.proc.WorkerProgress, which finds its file in DQBENCH_PROGRESS_FILE by itself.
"""

from __future__ import annotations

import os

if os.environ.get("DQBENCH_BUILDER_LOCK"):  # before anything else (see the docstring)
    from harness.locks import hold_builder_lock

    hold_builder_lock(os.environ["DQBENCH_BUILDER_LOCK"])

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.entry import restore_sigint
from harness.jobs import Job, resolve, worker_function
from harness.proc import write_json_atomic


def read_job(path: Path) -> Job[Any]:
    """The job a parent wrote with harness.proc.write_job: {"type": "module:Class", "job": {...}}."""
    raw = json.loads(path.read_text())
    job_type = resolve(raw["type"])
    if not (isinstance(job_type, type) and issubclass(job_type, Job)):
        raise TypeError(f"{raw['type']} is not a harness.jobs.Job")
    job: Job[Any] = job_type.model_validate(raw["job"])
    return job


def main(argv: Sequence[str] | None = None) -> None:
    restore_sigint()  # SIGINT as Python's, whatever the launcher left (harness/entry.py)
    ap = argparse.ArgumentParser(prog="python -m harness.worker", description=__doc__)
    ap.add_argument("--job", required=True, type=Path, help="the job JSON the parent wrote")
    ap.add_argument("--record", required=True, type=Path, help="where to write the record, atomically")
    ap.add_argument(
        "--ahead",
        metavar="MODULES",
        help="started before its job exists (harness/worker_ahead.py): import these comma-separated modules, "
        "write RECORD.warm, then wait for the job file",
    )
    args = ap.parse_args(argv)
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(line_buffering=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.ahead is not None:
        from harness.worker_ahead import wait_for_job

        wait_for_job(args.ahead, args.job, args.record)
    job = read_job(args.job)
    logging.getLogger("harness.worker").info("%s: %s", type(job).__name__, job.model_dump_json()[:4000])
    record = worker_function(type(job))(job)
    expected = type(job).record_type()
    if not isinstance(record, expected):
        raise TypeError(f"{type(job).worker} returned {type(record).__name__}, not its record {expected.__name__}")
    write_json_atomic(args.record, record.model_dump(mode="json"))


if __name__ == "__main__":
    main()

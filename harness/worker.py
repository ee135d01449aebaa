"""The child side of every worker: `python -m harness.worker --job FILE --record FILE`.

One entry point for all of them (harness/jobs.py has the protocol): take the builder lock the parent named
(first, before any heavy import: a worker lives in its own process group and may outlive a parent killed
with SIGKILL, and the next builder waits for it before it removes what it was writing, harness/locks.py),
read and validate the job, log to the file the parent opened (stderr timestamped, stdout line-buffered so
the log reads in order), run the job's worker function, check that it returned the job's record type, and
write the record atomically (a half-written record is never read as one), then end the process without the
interpreter's teardown (`exit_now`: ~2 s of freeing objects the parent would wait on). Progress goes through
harness.proc.WorkerProgress, which finds its file in DQBENCH_PROGRESS_FILE by itself.
"""

from __future__ import annotations

import os

if os.environ.get("DQBENCH_BUILDER_LOCK"):  # before anything else (see the docstring)
    from harness.locks import hold_builder_lock

    hold_builder_lock(os.environ["DQBENCH_BUILDER_LOCK"])

import argparse
import atexit
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
    ap.add_argument("--warm-with", metavar="MODULE:FUNCTION", help="with --ahead: what prepares from --hint")
    ap.add_argument("--hint", type=Path, help="with --ahead: the hint JSON (part of the job to come)")
    args = ap.parse_args(argv)
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(line_buffering=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.ahead is not None:
        from harness.worker_ahead import wait_for_job

        wait_for_job(args.ahead, args.job, args.record, args.warm_with, args.hint)
    job = read_job(args.job)
    logging.getLogger("harness.worker").info("%s: %s", type(job).__name__, job.model_dump_json()[:4000])
    record = worker_function(type(job))(job)
    expected = type(job).record_type()
    if not isinstance(record, expected):
        raise TypeError(f"{type(job).worker} returned {type(record).__name__}, not its record {expected.__name__}")
    write_json_atomic(args.record, record.model_dump(mode="json"))


def exit_now() -> None:
    """End the process at once, its record written: what waits on this process is the parent (run_worker),
    and the interpreter's own teardown, which frees every object one by one, took ~2 s in an lm-eval worker
    (half a million objects: lm-eval, datasets, transformers, torch) on a 2-core host, once per worker. The
    atexit handlers still run (multiprocessing's children, temporary folders), then logging and stdio are
    flushed; only the teardown is skipped."""
    atexit._run_exitfuncs()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(0)


if __name__ == "__main__":
    main()
    exit_now()  # after a record only: a failure above exits as Python does, with its traceback

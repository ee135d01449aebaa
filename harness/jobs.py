"""Typed jobs and records: what a parent hands a worker process, and what the worker hands back.

Every worker is a function `work(job: SomeJob) -> SomeRecord` in its stage's own folder, beside the plugin
that starts it (harness/compress/*_worker.py, harness/evaluate/*_worker.py ...). Its job and record are
pydantic models defined next to it, importable without torch, so the parent builds the job and reads the
record with the same classes the worker uses: a renamed field fails in mypy and in a unit test, never in a
worker at run time (optimum-benchmark keeps each backend's typed config beside the backend the same way).

- `Job[R]`: frozen, unknown fields refused; `worker` names the function ("module:function") the child runs;
  `R`, its record type, is read from the class's generic parameter (`class LogprobsJob(Job[LogprobsDump])`).
- `Record`: unknown fields refused; the parent validates what the child wrote before anyone reads it.

The parent runs a job with `harness.proc.run_worker(job, log, settings, stage=...) -> R`; the child side is
`python -m harness.worker` (harness/worker.py). Nothing here imports a backend.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict


class Record(BaseModel):
    """What a worker returns: written by the child as JSON, validated by the parent."""

    model_config = ConfigDict(extra="forbid")


R = TypeVar("R", bound=Record)


class Job(BaseModel, Generic[R]):
    """What a worker is asked to do. Subclass as `class XJob(Job[XRecord])` and set `worker`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    worker: ClassVar[str] = ""  # "module:function", function(job) -> record, run in the worker's interpreter
    # what a worker started before its job is known imports while it waits (harness/worker_ahead.py); a job
    # type that names nothing is never started ahead
    warm_imports: ClassVar[tuple[str, ...]] = ()
    # and what it then prepares from the parent's hint, a JSON object saying part of the job to come
    # ("module:function", function(hint: dict) -> None; the function keeps what it built for the worker
    # function to take when the job matches the hint); "" prepares nothing beyond the imports
    warm_with: ClassVar[str] = ""

    @classmethod
    def record_type(cls) -> type[Record]:
        """The record class this job's worker returns (the `R` of `Job[R]` in the class's bases)."""
        for klass in cls.__mro__:
            meta = getattr(klass, "__pydantic_generic_metadata__", None) or {}
            if meta.get("origin") is Job and meta.get("args"):
                arg = meta["args"][0]
                if isinstance(arg, type) and issubclass(arg, Record):
                    return arg
        raise TypeError(f"{cls.__name__} does not name its record type: declare it as `Job[SomeRecord]`")

    @classmethod
    def type_path(cls) -> str:
        """ "module:Class", how the child finds this job's class again."""
        return f"{cls.__module__}:{cls.__qualname__}"

    @classmethod
    def short_name(cls) -> str:
        """The worker's name in file names and messages (`gguf_worker`)."""
        return cls.worker.partition(":")[0].rsplit(".", 1)[-1]


def resolve(target: str) -> Any:
    """The object named by "module:attr"."""
    module, _, attr = target.partition(":")
    if not module or not attr:
        raise ValueError(f"expected 'module:attr', got {target!r}")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def worker_function(job_type: type[Job[Any]]) -> Callable[[Any], Record]:
    """The function a job type names (imports its module: call it in the worker's process only)."""
    if not job_type.worker:
        raise TypeError(f"{job_type.__name__}.worker is not set")
    fn: Callable[[Any], Record] = resolve(job_type.worker)
    return fn

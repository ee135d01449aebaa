"""The compressor plugin contract. Plugins declare capabilities the planner reads; the heavy work
runs in a worker subprocess (a typed job, harness/jobs.py: `*_worker.py` beside each plugin) so the
orchestrator never imports torch or llm-compressor. What a plugin returns is harness.result.Artefact: the
serving plugin loads it and the result stores it as it is.

`build_artefact` is how a plugin writes what it makes into the cell's work folder: under the artefact's
lock, the worker writes into a unique temporary name that is renamed into place, then the parent writes the
worker's record, then a manifest (`<name>.manifest.json`: each file with its size) last. An artefact is
reused only when its manifest's files are all there with their sizes and its record reads as the worker's
record type, so a worker killed half-way is redone, never served.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from harness.errors import StageError
from harness.jobs import Job, Record
from harness.locks import (
    BUILDER_LOCK_ENV,
    build_once,
    builder_lock,
    clean_leftovers,
    file_sizes,
    read_json,
    sizes_match,
    wait_reporter,
)
from harness.proc import run_worker, write_json_atomic
from harness.result import Artefact

if TYPE_CHECKING:
    from harness.models.arch import ArchInfo
    from harness.plan.cell import CellPlan
    from harness.settings import Settings
    from harness.spec.methods import MethodSpec
    from harness.workspace import CellPaths

R = TypeVar("R", bound=Record)


class Compressor(ABC):
    kind: ClassVar[str]
    precisions: ClassVar[tuple[str, ...]]
    needs_gpu: ClassVar[bool] = False
    engines: ClassVar[tuple[str, ...]] = ("vllm",)
    # True when the artefact is served in the cell's compute_dtype (the plan then makes it part of the cell)
    honours_compute_dtype: ClassVar[bool] = False
    # importable modules the plugin needs in the orchestrator's env (optional extras), name -> pip spec
    packages: ClassVar[dict[str, str]] = {}

    def scheme(self, cell: "CellPlan") -> str:
        """The served format, a key of harness.plan.support.SUPPORT (e.g. w4a16, fp8-dynamic, gguf)."""
        return cell.precision

    def missing_packages(self) -> str | None:
        """None when every optional package is importable; otherwise what to install."""
        import importlib.util

        missing = [pip for mod, pip in self.packages.items() if importlib.util.find_spec(mod) is None]
        return f"{', '.join(missing)} installed (pip install 'dqbench[legacy]')" if missing else None

    def plan_problems(self, cell: "CellPlan", arch: "ArchInfo | None") -> list[str]:
        """Problems found before any work (group size, engine support); each names the fix."""
        return []

    @abstractmethod
    def compress(self, cell: CellPlan, source: Path | str, paths: CellPaths, settings: Settings) -> Artefact:
        """Produce the artefact the cell serves, under `paths.work`, logging to `paths.logs` (heavy work in a
        worker subprocess)."""


class Calibration(BaseModel):
    """The calibration windows a compress worker draws (harness.measure.prompts.token_prompts: the same
    windows in every worker), as a job field and as the workers' records say what they used."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str
    samples: int
    seq_len: int
    seed: int


def calibration(spec: MethodSpec) -> Calibration:
    """The calibration every compress worker takes (data-free methods ignore it)."""
    return Calibration(
        source=spec.calibration_source,
        samples=spec.calibration_samples,
        seq_len=spec.calibration_seq_len,
        seed=spec.seed,
    )


def run_compress_worker(
    job: Job[R], log: Path, settings: Settings, env: dict[str, str], *, timeout: float = 6 * 3600
) -> R:
    """Run a compress job in `settings.python`'s environment (the caller picks it: llm-compressor's with
    `settings.with_python(settings.compress_python)`) and return its record; offline settings reach the
    worker as HF_HUB_OFFLINE so a hub lookup fails fast instead of hanging."""
    return run_worker(
        job,
        log,
        settings,
        stage="compress",
        timeout=timeout,
        env={"HF_HUB_OFFLINE": "1", **env} if settings.offline else env,
    )


def method_of(cell: CellPlan) -> MethodSpec:
    """The cell's method spec: a compressor other than `none` runs only for a cell the plan gave one."""
    if cell.method_spec is None:
        raise StageError("compress", f"cell {cell.cell_id} has no method spec (methods.<name>) to compress with")
    return cell.method_spec


def option_number(spec: MethodSpec, name: str, default: float) -> float:
    """`methods.<name>.options.<name>` as a number (the spec allows strings and lists there too)."""
    value = spec.options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise StageError("compress", f"methods options.{name}: expected a number, got {value!r}")
    try:
        return float(value)
    except ValueError:
        raise StageError("compress", f"methods options.{name}: expected a number, got {value!r}") from None


def checkpoint_ident(source: Path | str) -> str:
    """A cheap identity of a checkpoint folder for cache keys: its path and each weight file's name, size
    and mtime (no hashing of gigabytes); a hub id stands for itself."""
    src = Path(str(source))
    weights = sorted(src.glob("*.safetensors")) if src.is_dir() else []
    return f"{src.resolve()}|{[(w.name, w.stat().st_size, w.stat().st_mtime_ns) for w in weights]}"


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def artefact_manifest(final: Path) -> Path:
    return final.with_name(f"{final.name}.manifest.json")


def artefact_ready(final: Path) -> bool:
    """Whether `final` (and its record) are there as their manifest lists them."""
    m = read_json(artefact_manifest(final))
    return m is not None and sizes_match(final.parent, m.get("sizes"))


def read_record(path: Path, record_type: type[R]) -> R | None:
    """The record at `path` as `record_type`; None when it is missing or does not read as one."""
    try:
        return record_type.model_validate_json(path.read_bytes())
    except (OSError, ValidationError):  # invalid JSON is a ValidationError too
        return None


@dataclass(frozen=True)
class Built(Generic[R]):
    """What `build_artefact` hands back: the artefact's record, and whether this call built it."""

    record: R
    built: bool  # False: reused (the manifest's files were there), or built by a process we waited for


def build_artefact(
    final: Path,
    record: Path,
    run: Callable[[Path, dict[str, str]], R],
    record_type: type[R],
    *,
    what: str,
    log: Path,
) -> Built[R]:
    """Make the artefact `final` (a folder or a file in a work folder) and its `record` JSON unless both are
    there as their manifest says (and the record reads as `record_type`). `run(out, env)` runs the worker
    that writes the artefact at `out` (a temporary name) and returns its record; `env` goes to its
    run_worker (the builder lock). The record is written as the worker returned it
    (`model_dump(mode="json")`), then the manifest. A second process waits on the artefact's lock and then
    reuses it."""
    manifest = artefact_manifest(final)
    made: list[R] = []

    def valid(p: Path) -> bool:
        return artefact_ready(p) and read_record(record, record_type) is not None

    def build(tmp: Path) -> Callable[[], None]:
        manifest.unlink(missing_ok=True)  # the old entry is no longer trusted from here on
        clean_leftovers(record)
        made.append(run(tmp, {BUILDER_LOCK_ENV: str(builder_lock(tmp))}))

        def finish() -> None:  # after the artefact's rename: the record, then the manifest last
            write_json_atomic(record, made[0].model_dump(mode="json"))
            sizes = (
                {f"{final.name}/{k}": v for k, v in file_sizes(final).items()}
                if final.is_dir()
                else {final.name: final.stat().st_size}
            )
            write_json_atomic(manifest, {"sizes": {**sizes, record.name: record.stat().st_size}})

        return finish

    built = build_once(final, what=what, valid=valid, build=build, on_wait=wait_reporter(log))
    rec = made[0] if made else read_record(record, record_type)
    if rec is None:  # valid() read it a moment ago: only a process removing it since gets here
        raise StageError("compress", f"{what}: its record {record} is gone or unreadable; see {log}")
    return Built(rec, built)

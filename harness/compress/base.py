"""The compressor plugin contract. Plugins declare capabilities the planner reads; the heavy work
runs in a worker subprocess so the orchestrator never imports torch or llm-compressor.

`build_artefact` is how a plugin writes what it makes into the cell's work folder: under the artefact's
lock, the worker writes into a unique temporary name that is renamed into place, then the record, then a
manifest (`<name>.manifest.json`: each file with its size) last. An artefact is reused only when its
manifest's files are all there with their sizes, so a worker killed half-way is redone, never served.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from harness.errors import StageError
from harness.locks import (
    BUILDER_LOCK_ENV,
    build_once,
    builder_lock,
    clean_leftovers,
    file_sizes,
    read_json,
    sizes_match,
    unique_tmp,
    wait_reporter,
)
from harness.proc import run_module, write_json_atomic

if TYPE_CHECKING:
    from harness.models.arch import ArchInfo
    from harness.plan.cell import CellPlan
    from harness.settings import Settings
    from harness.spec.methods import MethodSpec
    from harness.workspace import CellPaths


@dataclass(frozen=True)
class Artefact:
    """What the serve stage loads: a folder (or hub id) plus the dtype/quantization to ask for."""

    model: str  # local folder or hub id
    dtype: str  # vLLM --dtype
    quantization: str | None  # what the server must report having loaded (None: unquantized)
    size_bytes: int | None
    bits_per_weight: float | None  # None when the parameter count is unknown (no estimate)
    record: dict = field(default_factory=dict)  # recipe, wall time, peak memory ... (stored with the cell)
    tokenizer: str | None = None  # HF tokenizer folder when `model` is not one (a .gguf file)
    server_args: dict = field(default_factory=dict)  # engine flags the artefact needs (load-time quantization)

    @property
    def tokenizer_src(self) -> str:
        return self.tokenizer or self.model


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


def calibration(spec: MethodSpec) -> dict[str, object]:
    """The calibration fields every compress worker takes (data-free methods ignore them)."""
    return {
        "calibration_source": spec.calibration_source,
        "calibration_samples": spec.calibration_samples,
        "calibration_seq_len": spec.calibration_seq_len,
        "seed": spec.seed,
    }


def run_compress_worker(
    module: str,
    cfg: dict[str, object],
    workdir: Path,
    log: Path,
    settings: Settings,
    env: dict[str, str],
    *,
    timeout: float = 6 * 3600,
    config_name: str = "compress-in.json",
) -> None:
    """Write the worker's config beside its output and run it (in `settings.python`'s environment); offline
    settings reach the worker as HF_HUB_OFFLINE so a hub lookup fails fast instead of hanging."""
    cfg_path = workdir / config_name
    write_json_atomic(cfg_path, cfg)
    run_module(
        module,
        ["--config", str(cfg_path)],
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


def build_artefact(
    final: Path, record: Path, run: Callable[[Path, Path, dict[str, str]], None], *, what: str, log: Path
) -> bool:
    """Make the artefact `final` (a folder or a file in a work folder) and its `record` JSON unless both are
    there as their manifest says; True when this call built them. `run(out, record, env)` runs the worker
    that writes the artefact at `out` and the record at `record` (both temporary names), passing `env` to
    run_worker (the builder lock). A second process waits on the artefact's lock and then reuses it."""
    manifest = artefact_manifest(final)

    def build(tmp: Path) -> Callable[[], None]:
        manifest.unlink(missing_ok=True)  # the old entry is no longer trusted from here on
        clean_leftovers(record)
        tmp_record = unique_tmp(record)
        try:
            run(tmp, tmp_record, {BUILDER_LOCK_ENV: str(builder_lock(tmp))})
            if not tmp_record.is_file():
                raise StageError("compress", f"{what}: the stage wrote no record ({record.name}); see {log}")
        except BaseException:
            tmp_record.unlink(missing_ok=True)
            raise

        def finish() -> None:  # after the artefact's rename: the record, then the manifest last
            os.replace(tmp_record, record)
            sizes = (
                {f"{final.name}/{k}": v for k, v in file_sizes(final).items()}
                if final.is_dir()
                else {final.name: final.stat().st_size}
            )
            write_json_atomic(manifest, {"sizes": {**sizes, record.name: record.stat().st_size}})

        return finish

    return build_once(final, what=what, valid=artefact_ready, build=build, on_wait=wait_reporter(log))

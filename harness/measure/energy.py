"""Energy per load level from the host's own counters (issue #28): joules per output token, tokens per joule.

- CPU cells: RAPL through the powercap interface, `/sys/class/powercap/intel-rapl:N/energy_uj` of each package
  zone (Intel, and AMD Zen since Linux 5.8, expose it under that name), summed over packages. It counts the whole
  package (cores, caches, uncore; not DRAM) for every process on it, so on a shared host it is the host's energy
  over the level, not the cell's alone, and the figure says so. The counter wraps at `max_energy_range_uj`: a
  reader thread looks every few seconds, so a wrap between two looks is counted once.
- GPU cells: NVML's `nvmlDeviceGetTotalEnergyConsumption` (mJ since the driver loaded, Volta and later) of the
  visible devices: the whole GPU, every process on it.

Where neither can be read (no powercap zone, a zone root may not read, no NVML) the level has no energy figure and
the load test's `perf.energy.note` says "not measurable on this host: <why>"; nothing is estimated in its place.
pynvml is imported lazily (requirements/gpu.txt); nothing here imports a backend.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Protocol

from harness.result import Level
from harness.result_engine import EnergyMeter, LevelEnergy

POWERCAP = Path("/sys/class/powercap")
NOT_MEASURABLE = "not measurable on this host"
RAPL_SCOPE = "CPU packages (RAPL: cores, caches, uncore; no DRAM), every process on them over the level's wall time"
NVML_SCOPE = "the whole GPU (NVML total energy), every process on it over the level's wall time"


class EnergyCounter(Protocol):
    name: str
    scope: str

    def read_j(self) -> float:
        """Joules counted since this counter was opened (monotonic)."""
        ...

    def close(self) -> None: ...


class RaplCounter:
    """The package zones of a powercap tree, summed, with wraps counted."""

    scope = RAPL_SCOPE

    def __init__(self, zones: list[Path]) -> None:
        self.zones = zones
        self.name = "rapl:" + "+".join(_zone_name(z) for z in zones)
        self._range = [_read_int(z / "max_energy_range_uj") for z in zones]
        self._last = [_read_int(z / "energy_uj") for z in zones]
        self._total_uj = 0
        self._lock = threading.Lock()

    def read_j(self) -> float:
        with self._lock:
            for i, z in enumerate(self.zones):
                now = _read_int(z / "energy_uj")
                step = now - self._last[i]
                if step < 0:  # wrapped at max_energy_range_uj
                    step += self._range[i] or 0
                self._total_uj += max(step, 0)
                self._last[i] = now
            return self._total_uj / 1e6

    def close(self) -> None:
        pass


class NvmlCounter:
    """NVML's total energy of the visible GPUs, summed (mJ since the driver loaded)."""

    scope = NVML_SCOPE

    def __init__(self, nvml: Any, devices: list[str], handles: list[Any]) -> None:
        self.nvml, self.handles = nvml, handles
        self.name = "nvml:" + ",".join(f"GPU{d}" for d in devices)
        self._start = self._mj()

    def _mj(self) -> float:
        return float(sum(self.nvml.nvmlDeviceGetTotalEnergyConsumption(h) for h in self.handles))

    def read_j(self) -> float:
        return (self._mj() - self._start) / 1000.0

    def close(self) -> None:
        try:
            self.nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001 - closing is best effort
            pass


def _read_int(path: Path) -> int:
    return int(path.read_text().strip())


def _zone_name(zone: Path) -> str:
    try:
        return (zone / "name").read_text().strip()
    except OSError:
        return zone.name


def rapl_counter(root: Path | None = None) -> tuple[RaplCounter | None, str]:
    """The package zones under `root` (default /sys/class/powercap) as one counter, or None and why not."""
    root = POWERCAP if root is None else root
    if not root.is_dir():
        return None, f"no RAPL: {root} does not exist (no powercap driver, or a container without it)"
    zones = sorted(
        z for z in root.glob("intel-rapl:*") if z.name.count(":") == 1 and _zone_name(z).startswith("package")
    )
    if not zones:
        return None, f"no RAPL package zone under {root} (no intel-rapl:N with name package-N)"
    try:
        return RaplCounter(zones), ""
    except PermissionError as exc:
        return None, f"RAPL is there but not readable by this user ({exc.filename}: permission denied; root can)"
    except (OSError, ValueError) as exc:
        return None, f"RAPL zone unreadable ({type(exc).__name__}: {exc})"


def nvml_counter() -> tuple[NvmlCounter | None, str]:
    """The visible GPUs' energy counter through NVML, or None and why not."""
    try:
        import pynvml
    except ImportError:
        return None, "no NVML (nvidia-ml-py is not installed: not a CUDA host)"
    from harness.measure.memory_sampler import _visible

    try:
        pynvml.nvmlInit()
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        devices, handles = _visible(pynvml, handles)
        if not handles:
            return None, "NVML sees no visible GPU"
        counter = NvmlCounter(pynvml, devices, handles)
    except Exception as exc:  # noqa: BLE001 - NVMLError_NotSupported (pre-Volta), no driver: no figure
        return None, f"NVML energy counter unavailable ({type(exc).__name__}: {exc})"
    return counter, ""


def open_counter(device: str, powercap: Path | None = None) -> tuple[EnergyCounter | None, EnergyMeter]:
    """The counter for a cell on `device` (cuda: NVML; cpu: RAPL) and the load test's `perf.energy` record."""
    counter: EnergyCounter | None
    if device == "cuda":
        counter, why = nvml_counter()
    else:
        counter, why = rapl_counter(powercap)
    if counter is None:
        return None, EnergyMeter(note=f"{NOT_MEASURABLE}: {why}")
    return counter, EnergyMeter(counter=counter.name, scope=counter.scope)


class EnergyProbe:
    """A load level's energy (harness/measure/run.py calls `begin` before its first send and `end` after its last
    answer): the counter's joules between the two, read by a thread every `every` s so a RAPL wrap is not missed."""

    def __init__(self, counter: EnergyCounter, every: float = 5.0) -> None:
        self.counter, self.every = counter, every
        self._t0 = 0.0
        self._j0 = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def begin(self) -> None:
        self._j0 = self.counter.read_j()
        self._t0 = time.monotonic()
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="dq-energy", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.counter.read_j()
            except Exception:  # noqa: BLE001 - a failed look is retried at the next one or at `end`
                pass

    def end(self, level: Level) -> dict[str, Any]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        try:
            joules = self.counter.read_j() - self._j0
        except Exception:  # noqa: BLE001 - the counter failed mid-test: this level has no figure
            return {}
        seconds = time.monotonic() - self._t0
        tokens = round(level.output_tok_s * level.duration_s)  # the completed requests' output tokens
        done = level.completed
        return {
            "energy": LevelEnergy(
                counter=self.counter.name,
                scope=self.counter.scope,
                joules=joules,
                seconds=seconds,
                output_tokens=tokens,
                requests=done,
                joules_per_token=joules / tokens if tokens else None,
                tokens_per_joule=tokens / joules if joules > 0 else None,
                joules_per_request=joules / done if done else None,
                watts=joules / seconds if seconds > 0 else None,
            )
        }

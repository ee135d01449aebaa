"""The pure parts of bench/faults.py: the /proc scan for tagged leftovers (real `sleep` processes), the
result-folder comparison (lost, duplicated, wrong `done`, index drift) on fixture JSON, and the scorecard.
The bench itself runs vLLM for real and is not run here."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[2] / "bench" / "faults.py"


@pytest.fixture(scope="module")
def faults():
    spec = importlib.util.spec_from_file_location("dq_bench_faults", PATH)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses resolve their module through sys.modules
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop(spec.name, None)


def _tagged_env(faults, tag: str) -> dict[str, str]:
    return {**os.environ, faults.TAG_VAR: tag}


# ------------------------------------------------------------------------------------------- /proc scan
def test_scan_finds_a_tagged_child_whose_parent_was_killed(faults) -> None:
    tag = uuid.uuid4().hex
    sh = subprocess.Popen(
        ["sh", "-c", "sleep 60 & echo $!; wait"],
        env=_tagged_env(faults, tag),
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        sleeper = int(sh.stdout.readline())
        assert {p.pid for p in faults.tagged_processes(tag)} == {sh.pid, sleeper}
        os.kill(sh.pid, signal.SIGKILL)
        sh.wait()
        left = faults.tagged_processes(tag)
        assert [p.pid for p in left] == [sleeper]  # re-parented, still found by its environment
        assert left[0].ppid != sh.pid and "sleep 60" in left[0].cmdline
        assert faults.kill_procs(left) == []
        assert faults.tagged_processes(tag) == []
    finally:
        faults.kill_procs(faults.tagged_processes(tag))
        sh.wait()


def test_scan_reads_again_a_process_caught_inside_exec(faults, monkeypatch) -> None:
    # a process inside exec() shows an empty environment for an instant: CI missed a `sleep` just forked so
    tag = uuid.uuid4().hex
    p = subprocess.Popen(["sleep", "30"], env=_tagged_env(faults, tag))
    real, reads = faults._environ, []

    def caught_in_exec(pid: int) -> bytes | None:
        if pid == p.pid:
            reads.append(pid)
            if len(reads) <= 2:
                return b""
        return real(pid)

    monkeypatch.setattr(faults, "_environ", caught_in_exec)
    try:
        assert [q.pid for q in faults.tagged_processes(tag)] == [p.pid]
        assert len(reads) == 3
    finally:
        p.kill()
        p.wait()


def test_scan_matches_the_exact_tag_and_skips_zombies(faults) -> None:
    tag = uuid.uuid4().hex
    other = subprocess.Popen(["sleep", "30"], env=_tagged_env(faults, tag + "x"))
    short = subprocess.Popen(["sleep", "0.2"], env=_tagged_env(faults, tag))
    try:
        time.sleep(1.0)  # `short` has exited but is not reaped: a zombie holds nothing
        assert faults.tagged_processes(tag) == []
    finally:
        other.kill()
        other.wait()
        short.wait()


def test_settle_waits_for_a_dying_process_and_returns_early(faults) -> None:
    tag = uuid.uuid4().hex
    p = subprocess.Popen(["sh", "-c", "sleep 1"], env=_tagged_env(faults, tag))
    t = time.monotonic()
    assert faults.settle(tag, since=t, window=10.0) == []
    assert time.monotonic() - t < 5.0
    p.wait()
    lasting = subprocess.Popen(["sleep", "30"], env=_tagged_env(faults, tag))
    try:
        t = time.monotonic()
        assert [x.pid for x in faults.settle(tag, since=t, window=1.0)] == [lasting.pid]
        assert time.monotonic() - t >= 1.0
    finally:
        lasting.kill()
        lasting.wait()


# ------------------------------------------------------------------------------------------- results
HOST = "h0"


def _doc(tmp: Path, cell: str, status: str = "done", student: bool = False, **drop: bool) -> dict:
    """A result as harness/cell/ writes it, complete unless told which block to `drop`."""
    (tmp / "art").mkdir(exist_ok=True)
    (tmp / "dump.npz").write_bytes(b"x")
    doc = {
        "cell_id": cell,
        "status": status,
        "host": {"host_id": HOST},
        "plan": {
            "cell_id": cell,
            "student": {"name": "s"} if student else None,
            "load": {
                "profiles": [
                    {"kind": "synchronous", "requests": 2},
                    {"kind": "concurrency", "levels": [4], "requests": 4},
                ]
            },
            "evaluation": {"tasks": [{"name": "dq_lambada"}, {"name": "dq_arc_easy"}], "shift": {"windows": 2}},
        },
        "timings": dict.fromkeys(
            ("prepare", "compress", "serve", "measure", "evaluate", "shift") + (("distill",) if student else ()), 1.0
        ),
        "perf": {
            "levels": [
                {"profile": "synchronous", "level": 1, "completed": 2},
                {"profile": "concurrency", "level": 4, "completed": 4},
            ],
            "stopped": None,
        },
        "quality": {
            "tasks": {
                "dq_lambada": {"metrics": {"acc": {"value": 0.5}}},
                "dq_arc_easy": {"metrics": {"acc": {"value": 0.25}}},
            }
        },
        "shift": {"dump": str(tmp / "dump.npz"), "metrics": {"kld_mean": 0.0}},
        "artefact": {"model": str(tmp / "art")},
        "serve": {"startup_s": 40.0},
        "memory": {"peak_gib": 3.0},
    }
    if student:
        (tmp / "student").mkdir(exist_ok=True)
        (tmp / "student" / "config.json").write_text("{}")
        doc["distill"] = {"path": str(tmp / "student")}
    for block in drop:
        doc.pop(block)
    return doc


def _write(results: Path, name: str, doc: dict) -> None:
    (results / "cells").mkdir(parents=True, exist_ok=True)
    (results / "cells" / name).write_text(json.dumps(doc))


def test_a_complete_done_result_has_no_problem_and_a_failed_one_is_not_judged(faults, tmp_path) -> None:
    assert faults.done_problems(_doc(tmp_path, "a")) == []
    assert faults.done_problems(_doc(tmp_path, "s", student=True)) == []
    assert faults.done_problems(_doc(tmp_path, "a", status="failed", quality=True, perf=True)) == []


@pytest.mark.parametrize(
    "mutate, expect",
    [
        (lambda d: d.pop("quality"), "quality: no score for dq_lambada"),
        (lambda d: d["perf"]["levels"].pop(), "perf: no concurrency 4 level"),
        (lambda d: d["perf"]["levels"][0].update(completed=0), "perf: synchronous 1 completed no request"),
        (
            lambda d: d["quality"]["tasks"]["dq_arc_easy"]["metrics"]["acc"].update(value=None),
            "no score for dq_arc_easy",
        ),
        (lambda d: d.pop("shift"), "shift: no metrics"),
        (lambda d: d["artefact"].update(model="/nonexistent/model"), "artefact /nonexistent/model missing"),
        (lambda d: d["timings"].pop("evaluate"), "no timing for stage(s) evaluate"),
        (lambda d: d.pop("memory"), "memory: no peak"),
    ],
)
def test_a_done_result_missing_a_stage_product_is_wrong(faults, tmp_path, mutate, expect) -> None:
    doc = _doc(tmp_path, "a")
    mutate(doc)
    assert any(expect in p for p in faults.done_problems(doc)), faults.done_problems(doc)


def test_a_done_student_without_its_checkpoint_is_wrong(faults, tmp_path) -> None:
    doc = _doc(tmp_path, "s", student=True)
    doc["distill"]["path"] = str(tmp_path / "gone")
    assert any("distill: student" in p for p in faults.done_problems(doc))


def test_lost_duplicated_and_wrong_done_from_result_folders(faults, tmp_path) -> None:
    before, after = tmp_path / "before", tmp_path / "after"
    _write(before, f"a@{HOST}.json", _doc(tmp_path, "a"))
    _write(before, f"b@{HOST}.json", _doc(tmp_path, "b"))
    _write(before, f"c@{HOST}.json", _doc(tmp_path, "c", status="failed"))
    _write(after, f"a@{HOST}.json", _doc(tmp_path, "a", status="failed"))  # lost: done before, failed now
    _write(after, f"b@{HOST}.json", _doc(tmp_path, "b"))
    _write(after, f"b@{HOST}-copy.json", _doc(tmp_path, "b"))  # two files for one (cell, host)
    _write(after, f"d@{HOST}.json", _doc(tmp_path, "d", quality=True))  # done without scores
    (after / "cells" / f".c@{HOST}.json.99.tmp").write_text("{")  # debris, not a result
    b, a = faults.read_results(before), faults.read_results(after)
    assert faults.lost(b, a) == [("a", HOST)]
    assert faults.lost(b, b) == []
    assert faults.duplicated(a) == [("b", HOST)]
    assert list(faults.wrong_done(a)) == [("d", HOST)]
    assert ("c", HOST) not in a
    assert faults.debris(after, None) == [str(after / "cells" / f".c@{HOST}.json.99.tmp")]


def test_a_duplicate_with_one_done_file_is_not_a_loss(faults, tmp_path) -> None:
    r = tmp_path / "r"
    _write(r, f"a@{HOST}.json", _doc(tmp_path, "a", status="failed"))
    _write(r, f"a@{HOST}-2.json", _doc(tmp_path, "a"))
    snap = faults.read_results(r)
    assert faults.status_of(snap, ("a", HOST)) == "done"
    assert faults.lost(snap, snap) == []


def test_index_problems(faults, tmp_path) -> None:
    r = tmp_path / "r"
    _write(r, f"a@{HOST}.json", _doc(tmp_path, "a"))
    _write(r, f"b@{HOST}.json", _doc(tmp_path, "b", status="failed"))
    snap = faults.read_results(r)
    rows = {("a", HOST): ["done"], ("b", HOST): ["done", "failed"]}
    keys = [("a", HOST), ("b", HOST), ("c", HOST)]
    assert faults.index_problems(snap, rows, keys) == ["b: 2 rows", "c: no row"]
    assert faults.index_problems(snap, {("a", HOST): ["planned"]}, [("a", HOST)]) == ["a: index planned, JSON done"]
    assert faults.index_problems(snap, None, keys) == ["index unreadable"]


def test_index_rows_reads_duckdb(faults, tmp_path) -> None:
    duckdb = pytest.importorskip("duckdb")
    path = tmp_path / "x.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE cells (cell_id VARCHAR, host_id VARCHAR, status VARCHAR)")
    con.execute("INSERT INTO cells VALUES ('a', 'h0', 'done'), ('a', 'h0', 'done'), ('b', 'h0', 'failed')")
    con.close()
    rows, why = faults.index_rows(path)
    assert why is None and rows == {("a", "h0"): ["done", "done"], ("b", "h0"): ["failed"]}
    assert faults.index_rows(tmp_path / "none.duckdb")[0] is None


# ------------------------------------------------------------------------------------------- scorecard
def test_scorecard_rows_details_and_totals(faults) -> None:
    clean = faults.Row(
        "kill-run-compress",
        "SIGKILL run",
        "compress",
        injected=True,
        fault_rc=-9,
        after_fault="w8a8:none",
        resume="done",
        resume_s=120.4,
    )
    bad = faults.Row(
        "kill-server-measure",
        "SIGKILL vLLM API server",
        "measure",
        injected=True,
        fault_rc=1,
        after_fault="w8a8:failed",
        resume="w8a8:failed",
        resume_s=90.0,
        orphans_fault=[{"pid": 42, "ppid": 1, "cmdline": "VLLM::EngineCore"}],
        lost=["b6ad (ref)"],
        wrong_done=["x (w8a8): no perf"],
        index=["x: no row"],
    )
    missed = faults.Row("ctrl-c-serve", "SIGINT process group", "serve", notes=["the run ended (rc 1) before serve"])
    text = faults.render([clean, bad, missed])
    head = text.splitlines()[0].split()
    assert head[:3] == ["scenario", "fault", "stage"]
    assert "NOT INJECTED" in text and "pid 42 (ppid 1): VLLM::EngineCore" in text
    assert "lost: b6ad (ref)" in text and "note: the run ended (rc 1) before serve" in text
    t = faults.totals([clean, bad, missed])
    assert t == {
        "scenarios": 3,
        "not_injected": 1,
        "bench_errors": 0,
        "orphans_fault": 1,
        "orphans_resume": 0,
        "lost": 1,
        "duplicated": 0,
        "wrong_done": 1,
        "index": 1,
        "resume_not_done": 1,
        "not_refused": 0,
    }
    assert text.rstrip().endswith("resumes not all done 1, bad matrices not refused 0")
    assert faults.row_cells(clean)[3:] == ["-9", "w8a8:none", "0", "0", "0", "0", "0", "0", "done", "120"]


def test_summarize_status(faults) -> None:
    roles = {"a": "ref", "b": "w8a8"}
    assert faults.summarize_status({"a": "done", "b": "done"}, roles) == "done"
    assert faults.summarize_status({"a": "done", "b": None}, roles) == "ref:done w8a8:none"


def test_every_scenario_is_listed_once_and_the_matrix_plans(faults) -> None:
    names = [s.name for s in faults.SCENARIOS]
    assert len(names) == len(set(names))
    stages = {(s.fault, s.stage) for s in faults.SCENARIOS}
    for stage in ("compress", "distill", "serve", "measure", "evaluate"):
        assert ("SIGKILL run", stage) in stages
    from harness.spec import load_matrix

    m = load_matrix(faults.MATRIX)
    assert m.students and m.students[0].max_steps <= 4


def test_every_bad_matrix_is_refused_with_its_message_before_anything_loads(faults, tmp_path, monkeypatch) -> None:
    """The bad-matrix scenarios' matrices, refused in-process by the same spec and plan `harness run` uses
    (the bench runs them as `harness run`: no process, log or work folder may be made)."""
    import dataclasses

    import yaml

    from harness.errors import DQError
    from harness.plan import plan_matrix
    from harness.settings import load_settings
    from harness.spec import parse_matrix

    if not (faults._shared_home() / "models" / "smollm2-135m-instruct" / "config.json").is_file():
        pytest.skip("embedded model not prepared")
    names = [s.name for s in faults.BAD_SCENARIOS]
    assert len(names) >= 9 and set(names) <= {s.name for s in faults.SCENARIOS}
    for sc in faults.BAD_SCENARIOS:
        doc = yaml.safe_load(faults.MATRIX.read_text())
        folder = tmp_path / sc.name
        folder.mkdir()
        sc.bad.mutate(doc, folder)
        settings = load_settings({**os.environ, **sc.bad.env})
        if sc.bad.env:
            settings = dataclasses.replace(settings, home=tmp_path / "home")  # no cached option list
        with pytest.raises(DQError) as e:
            plan_matrix(parse_matrix(doc), settings, host="cpu-avx512")
        assert sc.bad.expect in str(e.value), (sc.name, str(e.value)[:500])
        assert e.value.exit_code == sc.bad.rc, sc.name


def test_ray_scenarios_are_behind_their_flag_and_read_the_drivers_lines(faults) -> None:
    default = {s.name for s in faults.SCENARIOS}
    assert faults.RAY_SCENARIOS and not {s.name for s in faults.RAY_SCENARIOS} & default
    assert {s.fault for s in faults.RAY_SCENARIOS} == {
        "Ray worker SIGKILLed",
        "Ray driver SIGKILLed",
        "Ray node stopped",
    }
    line = "[  41.2s]   [b83f969805db on host (node 1a2b3c4d)]   stage evaluate"
    assert faults.RAY_STAGE_LINE.search(line).groups() == ("b83f969805db", "evaluate")
    assert faults.CELL_PROCESS.search("python -m harness.guard 12 --grace 12 -- python -m vllm.entrypoints")
    assert not faults.CELL_PROCESS.search("/usr/bin/raylet --node_ip_address=127.0.0.1")


class _FakeRun:
    """A run whose stderr is a list of lines the test extends, and that never ends."""

    def __init__(self, faults, lines: list[str]) -> None:
        self.lines = lines
        self.stages = lambda cell: faults.Run.stages(self, cell)
        self.reached = lambda cell, stage: faults.Run.reached(self, cell, stage)
        self.left = lambda cell, stage: faults.Run.left(self, cell, stage)

    def text(self) -> str:
        return "\n".join(self.lines)

    def poll(self):
        return None


RAY_LINES = [
    "[    2.9s]   submitted b83f969805db smollm2-135m/int8/w8a8/none to Ray",
    "[    3.9s]   [b83f969805db on vm (node 63fb7021)] cell b83f969805db smollm2-135m/int8/w8a8/none",
    "[    3.9s]   [b83f969805db on vm (node 63fb7021)] stage serve",
    "[   35.0s]   [b83f969805db on vm (node 63fb7021)] stage measure",
    "[   43.0s]   [b83f969805db on vm (node 63fb7021)] stage evaluate",
]


def test_the_trigger_reads_a_cells_stages_from_its_own_and_the_ray_drivers_lines(faults) -> None:
    local = _FakeRun(
        faults, ["[ 0.1s] cell 9c0445ff1b13 m/p", "[ 0.2s]   stage serve", "[ 9.0s] cell b83f969805db m/q"]
    )
    local.lines += ["[ 9.1s]   stage serve", "[20.0s]   stage measure"]
    assert local.stages("b83f969805db") == ["serve", "measure"] and local.stages("9c0445ff1b13") == ["serve"]
    assert local.left("b83f969805db", "serve") == "measure" and local.left("b83f969805db", "measure") is None
    ray = _FakeRun(faults, list(RAY_LINES))
    assert ray.stages("b83f969805db") == ["serve", "measure", "evaluate"]
    assert ray.reached("b83f969805db", "evaluate") and not ray.reached("9c0445ff1b13", "evaluate")
    # the form the driver printed while rich read the prefix as markup: no cell named, so no stage of the cell
    stripped = _FakeRun(faults, ["[    3.9s]    cell b83f969805db m/q", "[   43.0s]    stage evaluate"])
    assert not stripped.reached("b83f969805db", "evaluate")


def _ctx(faults, tmp_path, run) -> object:
    ctx = faults.Ctx(tmp_path, tmp_path, tmp_path, tmp_path, {"w8a8": "b83f969805db"}, "h")
    ctx.run = run
    return ctx


def test_a_fault_due_after_its_stage_ended_is_not_struck(faults, tmp_path) -> None:
    run = _FakeRun(faults, list(RAY_LINES))
    ctx = _ctx(faults, tmp_path, run)
    assert faults._at("w8a8", "evaluate", 0.0)(ctx, "tag") is True  # still in evaluate: the moment
    run.lines.append("[   57.0s]   [b83f969805db on vm (node 63fb7021)] stage shift")
    assert faults._at("w8a8", "evaluate", 0.0)(ctx, "tag") is False
    assert ctx.notes[-1] == "w8a8 had left evaluate (it was at shift) when the fault was due: not struck"
    assert faults._at("w8a8", "evaluate", 0.0, within=False)(ctx, "tag") is True
    # and a Ray fault that finds no moment strikes nothing
    assert faults.ray_fault("kill-worker", faults._at("w8a8", "evaluate", 0.0))(ctx, "tag") is False

"""The harness CLI's user-facing errors and outputs (no model is loaded by any of these)."""

import json
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import MATRICES, REPO


def harness(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "harness", *args], capture_output=True, text=True, cwd=REPO, timeout=60, env=env
    )


def test_validate_ok_and_bad(tmp_path, base_matrix):
    r = harness("validate", str(MATRICES / "smollm2-cpu.yaml"))
    assert r.returncode == 0 and "valid" in r.stdout
    base_matrix["load"]["profiles"][0]["requests"] = "many"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(base_matrix))
    r = harness("validate", str(bad))
    assert r.returncode == 2
    assert "load.profiles[0].requests: got 'many'" in r.stderr and "Traceback" not in r.stderr


def test_unknown_task_exit_code(tmp_path, base_matrix):
    base_matrix["evaluation"]["tasks"] = [{"name": "dq_arc_hard"}]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(base_matrix))
    r = harness("run", str(bad))
    assert r.returncode == 3 and "unknown task 'dq_arc_hard'" in r.stderr


def test_tasks_lists_the_offline_catalog():
    r = harness("tasks", "gsm8k", "--json")
    rows = {row["task"]: row for row in json.loads(r.stdout)}
    assert r.returncode == 0 and {"gsm8k", "gsm8k_cot"} <= set(rows) and "arc_easy" not in rows
    assert rows["gsm8k"]["shots"] == [5] and not rows["gsm8k"]["fewshot_offline"]
    assert rows["gsm8k_cot"]["fewshot_offline"] and rows["gsm8k"]["output"] == "generate_until"
    r = harness("tasks", "mmlu")
    assert r.returncode == 0 and "mmlu_stem" in r.stdout and "dq_arc_easy" not in r.stdout


def test_plan_json_lists_cells_with_reasons(tmp_path):
    r = harness("plan", str(MATRICES / "llama8b.yaml"), "--json")
    assert r.returncode == 0
    doc = json.loads(r.stdout)
    assert doc["matrix"] == "llama8b" and len(doc["cells"]) == 16 and doc["skipped"]
    bnb = next(c for c in doc["cells"] if c["method"] == "bnb")
    assert bnb["status"] == "infeasible" and any("bitsandbytes" in x for x in bnb["reasons"])
    r = harness("plan", str(MATRICES / "llama8b.yaml"))
    assert "infeasible:" in r.stdout and "no `bitsandbytes` quantization method" in r.stdout


def test_status_json_before_any_run(tmp_path):
    import os

    env = dict(os.environ, DQBENCH_RESULTS=str(tmp_path))
    r = harness("status", str(MATRICES / "smollm2-cpu.yaml"), "--json", env=env)
    cells = json.loads(r.stdout)
    # 4 of the teacher, 2 of its student, 1 of the student drafting for the teacher's GGUF cell
    assert len(cells) == 7 and cells[0]["method"] == "none" and cells[-1]["draft"] == "kd-draft"
    assert {c["status"] for c in cells} <= {"planned", "infeasible"} and all(c["metrics"] == {} for c in cells)


def test_status_names_this_host_and_reads_only_its_results(tmp_path):
    """Results are per host: a result stored for another host leaves the cell `planned` here, and says where."""
    import os

    from harness.hw.caps import CpuInfo, HostCaps
    from harness.store.results import ResultStore

    caps = HostCaps(cpu=CpuInfo(model="Test CPU", arch="x86_64", cores=2, memory_gib=8.0, flags=["avx2"]))
    (tmp_path / "host.json").write_text(caps.model_dump_json())
    env = dict(
        os.environ,
        DQBENCH_RESULTS=str(tmp_path / "results"),
        DQBENCH_HOST_CAPS=str(tmp_path / "host.json"),
        DQBENCH_HOST_CAPS_RUN="1",
    )
    first = json.loads(harness("status", str(MATRICES / "smollm2-cpu.yaml"), "--json", env=env).stdout)[0]
    store = ResultStore(tmp_path / "results")
    other = {"host_id": "0ther00000", "label": "Other CPU · avx512 · 64 cores"}
    level = {"profile": "synchronous", "level": 1, "requests": 2, "completed": 2, "failed": 0, "output_tok_s": 123.0}
    base = {
        "cell_id": first["cell_id"],
        "matrix": "smollm2-cpu",
        "label": "a cell",
        "plan": {"cell_id": first["cell_id"]},
        "perf": {"levels": [level]},
    }
    store.write({**base, "status": "done", "host": other})
    rows = json.loads(harness("status", str(MATRICES / "smollm2-cpu.yaml"), "--json", env=env).stdout)
    row = rows[0]
    assert row["status"] == "planned" and row["metrics"] == {}
    assert row["host_id"] == caps.host_id and row["host_label"] == caps.label
    assert "done on Other CPU · avx512 · 64 cores [0ther00000], not on this host" in row["reason"]
    store.write({**base, "status": "done", "host": caps.host_block()})
    r = harness("status", str(MATRICES / "smollm2-cpu.yaml"), env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == f"host: {caps.label} [{caps.host_id}] (override:{tmp_path / 'host.json'})"
    line = next(x for x in r.stdout.splitlines() if first["cell_id"] in x)
    assert caps.host_id in line and "done" in line and "123.0" in line


def test_run_refuses_to_file_real_measurements_under_a_host_override(tmp_path):
    """A preset is for planning: a real run under it would store this machine's figures as another host."""
    import os

    env = dict(os.environ, DQBENCH_RESULTS=str(tmp_path / "results"), DQBENCH_HOST_CAPS="cpu-avx512")
    env.pop("DQBENCH_HOST_CAPS_RUN", None)
    r = harness("run", str(MATRICES / "smollm2-cpu.yaml"), env=env)
    assert r.returncode == 3 and "replaces the hardware probe" in r.stderr and "Unset DQBENCH_HOST_CAPS" in r.stderr
    assert not list((tmp_path / "results").glob("cells/*.json"))
    p = harness("plan", str(MATRICES / "smollm2-cpu.yaml"), "--json", env=env)  # planning for it is what it is for
    assert p.returncode == 0 and all(c["status"] != "failed" for c in json.loads(p.stdout)["cells"])


def test_validate_and_run_fail_when_no_cell_can_run_here(tmp_path, base_matrix):
    """Every cell infeasible on this host: `validate` prints the plan summary and `run` does nothing, both exit 3
    with each cell's reasons (a run that did nothing must not read as success)."""
    import os

    env = dict(
        os.environ, DQBENCH_RESULTS=str(tmp_path / "results"), DQBENCH_HOST_CAPS="cpu-avx512", DQBENCH_HOST_CAPS_RUN="1"
    )
    base_matrix["hardware"]["device"] = "cuda"
    path = tmp_path / "gpu-only.yaml"
    path.write_text(yaml.safe_dump(base_matrix))
    r = harness("validate", str(path), env=env)
    assert r.returncode == 3, r.stderr
    assert r.stdout.startswith(f"{path}: parsed (1 model(s)") and "on this host 0 of 4 cell(s) can run" in r.stdout
    assert ": valid (" not in r.stdout and "Traceback" not in r.stderr
    assert "every cell is infeasible" in r.stderr and r.stderr.count("needs a CUDA GPU (hardware.device: cuda)") == 4
    r = harness("run", str(path), env=env)
    assert r.returncode == 3 and "every cell is infeasible" in r.stderr and "smollm2-135m/bf16/none/none" in r.stderr
    assert not (tmp_path / "results" / "cells").exists()
    base_matrix["hardware"]["device"] = "cpu"
    path.write_text(yaml.safe_dump(base_matrix))
    r = harness("validate", str(path), env=env)
    assert r.returncode == 0 and ": valid (" in r.stdout and "on this host 4 of 4 cell(s) can run" in r.stdout


def test_binary_matrix_file_is_one_error(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_bytes(bytes(range(256)))
    r = harness("validate", str(path))
    assert r.returncode == 2 and f"{path}: not a UTF-8 text file" in r.stderr and "Traceback" not in r.stderr


def test_db_rebuild_keeps_planned_rows_and_refuses_while_a_run_writes(tmp_path):
    import os

    from harness.runner import writer_lock
    from harness.store import db
    from harness.store.results import ResultStore

    doc = json.loads((REPO / "tests" / "fixtures" / "result-v2.json").read_text())
    results = tmp_path / "results"
    index = results / "dqbench.duckdb"
    env = dict(os.environ, DQBENCH_RESULTS=str(results))
    env.pop("DQBENCH_DB", None)
    pending = dict(doc["plan"], cell_id="pend00000000")
    infeasible = dict(doc["plan"], cell_id="infe00000000", status="infeasible", reason="no kernel here")
    db.ingest(index, [(doc["plan"], None), (pending, None), (infeasible, None)], host=doc["host"])
    ResultStore(results).write(doc)

    with writer_lock(results):  # what a `harness run` holds while it writes
        before = index.read_bytes()
        r = harness("db", "rebuild", env=env)
        assert r.returncode == 1 and "another `harness run` is writing" in r.stderr and "Traceback" not in r.stderr
        assert index.read_bytes() == before

    r = harness("db", "rebuild", env=env)
    assert r.returncode == 0, r.stderr
    assert f"{index}: rebuilt from 1 result file(s), kept 2 planned/infeasible row(s) of the old index" in r.stdout
    con = db.connect_read_only(index)
    assert sorted(con.execute("SELECT cell_id, status FROM cells").fetchall()) == sorted(
        [(doc["cell_id"], "done"), ("pend00000000", "planned"), ("infe00000000", "infeasible")]
    )
    con.close()

    index.write_text("not a database\n")  # an index something else overwrote: rebuilt, and it says what it lost
    r = harness("db", "rebuild", env=env)
    assert r.returncode == 0 and "kept 0 planned/infeasible" in r.stdout
    assert "note: the old index could not be read" in r.stderr and f"{index} is not a DuckDB database" in r.stderr


def _dump(index) -> dict:
    """Every table of the index, every row, in a stable order."""
    from harness.store import db

    con = db.connect_read_only(index)
    try:
        names = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall()]
        return {n: con.execute(f"SELECT * FROM {n} ORDER BY ALL").fetchall() for n in names}
    finally:
        con.close()


def test_db_rebuild_from_the_json_alone_reproduces_every_table_after_work_is_deleted(tmp_path):
    """The results JSON is the whole truth: index a reference and a child (with flips against the reference's
    stored items) as a run does, delete results/work/ (the samples the items came from), rebuild: every table
    is the same, per-item rows included."""
    import copy
    import os
    import shutil

    from harness.evaluate.reference import item_flips
    from harness.result import CellResult
    from harness.store import db
    from harness.store.results import ResultStore

    results = tmp_path / "results"
    index = results / "dqbench.duckdb"
    store = ResultStore(results)
    ref = json.loads((REPO / "tests" / "fixtures" / "result-v3.json").read_text())
    host = ref["host"]
    samples = store.work_dir(ref["cell_id"]) / host["host_id"] / "samples"
    samples.mkdir(parents=True)
    for task, t in ref["quality"]["tasks"].items():  # the files the evaluate step read the items from
        t["samples_path"] = str(samples / f"{task}.jsonl")
        Path(t["samples_path"]).write_text(
            "".join(json.dumps({"doc_id": i["doc_id"], **i["scores"]}) + "\n" for i in t["items"])
        )
    child = copy.deepcopy(ref)
    child.update(cell_id="c0ffee000001", plan=dict(ref["plan"], cell_id="c0ffee000001", parent_id=ref["cell_id"]))
    for t in child["quality"]["tasks"].values():
        for item in t["items"][::7]:  # the child gets every 7th item of every task wrong
            item["scores"] = dict.fromkeys(item["scores"], 0.0)
    parent_r, child_r = CellResult.model_validate(ref), CellResult.model_validate(child)
    child["shift"] = {"reference": ref["cell_id"], "flips": item_flips(parent_r.quality, child_r.quality, 200)}
    assert child["shift"]["flips"]["tasks"]["dq_arc_easy"]["acc"]["ref_correct_cell_wrong"] > 0
    db.ingest(index, [(dict(ref["plan"], cell_id="pend00000000"), None)], host=host)  # a cell not run yet
    for doc in (ref, child):  # as the runner does: store, read back, index
        store.write(doc)
        kept = store.read(doc["cell_id"], host["host_id"])
        db.ingest(index, [(kept.plan, kept)], host=host)
    before = _dump(index)
    assert len(before["items"]) == 2 * sum(
        len(i["scores"]) for t in ref["quality"]["tasks"].values() for i in t["items"]
    )
    assert before["flips"] and len(before["cells"]) == 3

    shutil.rmtree(results / "work")
    env = dict(os.environ, DQBENCH_RESULTS=str(results))
    env.pop("DQBENCH_DB", None)
    r = harness("db", "rebuild", env=env)
    assert r.returncode == 0, r.stderr
    assert "rebuilt from 2 result file(s), kept 1 planned/infeasible" in r.stdout
    assert _dump(index) == before


def test_db_rebuild_names_the_result_files_it_refuses(tmp_path):
    import os

    results = tmp_path / "results"
    (results / "cells").mkdir(parents=True)
    newer = results / "cells" / "abc@h1.json"
    newer.write_text(json.dumps({"schema_version": 99, "cell_id": "abc", "status": "done"}))
    env = dict(os.environ, DQBENCH_RESULTS=str(results))
    env.pop("DQBENCH_DB", None)
    r = harness("db", "rebuild", env=env)
    assert r.returncode == 0 and "rebuilt from 0 result file(s)" in r.stdout
    assert f"refused: {newer}: result schema_version 99 is not readable by this dqbench" in r.stderr
    assert newer.is_file()  # left for a person to look at


def test_plan_shows_the_smallest_detectable_drop_per_task_and_warns_against_resolve_drop(tmp_path, base_matrix):
    import os

    base_matrix["evaluation"]["resolve_drop"] = "40pt"
    f = tmp_path / "m.yaml"
    f.write_text(yaml.safe_dump(base_matrix))
    env = dict(os.environ, DQBENCH_RESULTS=str(tmp_path / "results"))
    doc = json.loads(harness("plan", str(f), "--json", env=env).stdout)
    power = {r["task"]: r for r in doc["power"]}
    assert power["dq_pydoc_ppl"]["note"] == "no per-item accuracy"
    assert power["dq_arc_easy"]["resolved"] is True and round(power["dq_arc_easy"]["mde_pt"], 1) == 36.2
    assert power["dq_hellaswag"]["resolved"] is False and power["dq_hellaswag"]["items_needed"] == 25
    r = harness("plan", str(f), env=env)
    assert r.returncode == 0, r.stderr
    assert "smallest paired drop each task can detect (95% two-sided, 80% power); resolve_drop 40pt" in r.stdout
    assert "warning: dq_hellaswag: with 20 items the smallest detectable drop is 44.3 pt" in r.stdout
    assert "warning: dq_arc_easy" not in r.stdout

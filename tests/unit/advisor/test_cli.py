"""The advisor CLI against a real DuckDB file in the index's schema (written from synthetic tables)."""

import json

import pytest

from advisor.cli import NOTHING_FITS, main
from advisor.synthetic import write_synthetic_db


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("adv") / "r.duckdb"
    write_synthetic_db(path, 6, seed=3)
    return str(path)


def run(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_recommendation_json(capsys, db):
    code, out, _ = run(capsys, "--db", db, "--vram", "24", "--max-drop", "2%", "--concurrency", "8", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["ok"] and doc["recommendations"] and doc["serve_command"].startswith("vllm serve /models/")
    assert "--max-num-seqs 8" in doc["serve_command"]
    best = doc["recommendations"][0]
    assert best["mem_need_gib"] <= 24 and best["drop"] <= 0.02
    assert "Recommended:" in doc["decision"]


def test_human_output_has_table_command_and_decision(capsys, db):
    code, out, _ = run(capsys, "--db", db, "--vram", "24", "--max-drop", "1.5pt", "--gpu-price", "2.5")
    assert code == 0
    assert "top " in out and "serve it:" in out and "vllm serve" in out and "Recommended:" in out
    assert "rejected, by the constraint they broke" in out


def test_nothing_fits_exit_code(capsys, db):
    code, out, _ = run(capsys, "--db", db, "--vram", "0.5")
    assert code == NOTHING_FITS == 4
    assert "Nothing measured meets every constraint" in out and "memory" in out


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--max-drop", "2"], "--max-drop '2'"),
        (["--vram", "lots"], "--vram 'lots': expected a number"),
        (["--vram", "-3"], "must be greater than 0"),
        (["--objective", "cost"], "needs --gpu-price"),
        (["--concurrency", "2.5"], "expected a whole number"),
        (["--task", "dq_arc_easy"], "go together"),
        (["--vram", "nan"], "--vram 'nan': expected a finite number greater than 0, e.g. --vram 24"),
        (["--vram", "inf"], "--vram 'inf': expected a finite number"),
        (["--vram=-inf"], "--vram '-inf': expected a finite number"),
        (["--min-tok-s", "NaN"], "--min-tok-s 'NaN': expected a finite number"),
        (["--max-ttft-ms", "infinity"], "--max-ttft-ms 'infinity': expected a finite number"),
        (["--gpu-price", "nan"], "--gpu-price 'nan': expected a finite number"),
        (["--max-drop", "nan%"], "--max-drop 'nan%'"),
        (["--max-drop", "9" * 400 + "pt"], "expected a finite drop"),
        (["--context-len", "nan"], "--context-len 'nan': expected a whole number"),
        (["--decide", "maybe"], "--decide 'maybe': choose conservative or point"),
        (["--decide", "point", "--conservative"], "--conservative and --decide point contradict"),
    ],
)
def test_malformed_input_is_one_clear_error(capsys, db, args, needle):
    code, _, err = run(capsys, "--db", db, *args)
    assert code == 2 and needle in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_a_database_held_by_another_process_is_exit_3_with_one_message(capsys, db, monkeypatch):
    """A `duckdb` shell or notebook with a write connection: even a read-only open fails while it lives."""
    import harness.store.db
    from tests.fakes.duckdb_holder import held

    monkeypatch.setattr(harness.store.db, "READ_WAIT_S", 0.5)  # the wait for a busy file, shortened
    with held(db) as pid:
        code, out, err = run(capsys, "--db", db, "--vram", "24")
    assert code == 3 and out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith(f"error: the results index {db} is locked by PID {pid}")
    assert "close that connection and try again" in err


def test_a_file_that_is_not_a_duckdb_database_is_exit_3_with_one_message(capsys, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("vram: 24\n")
    code, out, err = run(capsys, "--db", str(notes), "--vram", "24")
    assert code == 3 and out == "" and len(err.strip().splitlines()) == 1
    assert f"error: {notes} is not a DuckDB database" in err and "--db" in err


def test_advisor_subprocess_on_a_damaged_database_prints_no_traceback(tmp_path, db):
    import subprocess
    import sys

    from tests.conftest import REPO

    bad = tmp_path / "bad.duckdb"
    raw = bytearray(open(db, "rb").read())
    raw[5000:9000] = b"\xff" * 4000
    bad.write_bytes(bytes(raw))
    r = subprocess.run(
        [sys.executable, "-m", "advisor.cli", "--db", str(bad), "--vram", "24", "--host", "all"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert r.returncode == 3 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith(f"error: the results index {bad} is damaged") and "harness db rebuild" in r.stderr


def test_missing_db_and_unknown_model(capsys, tmp_path, db):
    code, _, err = run(capsys, "--db", str(tmp_path / "none.duckdb"))
    assert code == 3 and "no results database" in err
    code, _, err = run(capsys, "--db", db, "--model", "nope")
    assert code == 3 and "model-0" in err
    code, _, err = run(capsys, "--db", db, "--task", "dq_arc_easy", "--metric", "f1")
    assert code == 3 and "dq_arc_easy/acc" in err


def test_default_is_this_hosts_results_and_every_figure_names_its_host(capsys, db):
    from advisor.synthetic import SYNTHETIC_HOST

    code, out, _ = run(capsys, "--db", db, "--vram", "24", "--max-drop", "2%", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["hosts"]["host"] == SYNTHETIC_HOST["host_id"] and "(this host)" in doc["hosts"]["label"]
    for r in doc["recommendations"] + [v["nearest"] for v in doc["rejected"].values()]:
        assert r["host_id"] == SYNTHETIC_HOST["host_id"] and r["host_label"] == SYNTHETIC_HOST["host_label"]
    assert f"measured on {SYNTHETIC_HOST['host_label']} [{SYNTHETIC_HOST['host_id']}]" in doc["decision"]
    code, out, _ = run(capsys, "--db", db, "--vram", "24", "--max-drop", "2%")
    assert code == 0 and f"hosts: {SYNTHETIC_HOST['host_label']}" in out
    assert "synthetic GPU host" in out.split("top ", 1)[1]  # the host column of the table


def test_host_flag_all_and_unknown_host(capsys, db):
    code, out, _ = run(capsys, "--db", db, "--vram", "24", "--host", "all", "--json")
    assert code == 0 and json.loads(out)["hosts"]["host"] == "all"
    code, _, err = run(capsys, "--db", db, "--vram", "24", "--host", "feedbeef00")
    assert code == 3 and "--host feedbeef00" in err and "synth0000000 (synthetic GPU host" in err


def test_this_host_without_results_names_the_hosts_that_have_some(capsys, db, this_host_is_synthetic):
    this_host_is_synthetic.host_id = "0123456789"
    code, _, err = run(capsys, "--db", db, "--vram", "24")
    assert code == 3 and "--host 0123456789" in err and "--host all" in err


def test_probe_unavailable_falls_back_to_all_hosts_and_says_so(capsys, db, monkeypatch):
    import harness.hw.probe
    from harness.errors import DQError

    def broken(settings, refresh=False):
        raise DQError("the engine probe failed")

    monkeypatch.setattr(harness.hw.probe, "host_caps", broken)
    code, out, _ = run(capsys, "--db", db, "--vram", "24", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["hosts"]["host"] == "all" and "could not be probed" in doc["hosts"]["note"]
    code, out, _ = run(capsys, "--db", db, "--vram", "24")
    assert "hosts: all hosts (this host could not be probed" in out


def test_decide_flag_json_and_text(capsys, db):
    """Synthetic scores carry lm-eval's stderr over 500 items per task: a 2% limit leaves most quantized cells
    undecided. Conservative (the default) ranks only `within` cells; point ranks undecided ones too, marked."""
    from advisor.verdict import VERDICTS

    args = ("--db", db, "--vram", "80", "--max-drop", "2%", "--top", "50", "--json")
    cons = json.loads(run(capsys, *args)[1])
    point = json.loads(run(capsys, *args, "--decide", "point")[1])
    assert cons["constraints"]["decide"] == "conservative" and point["constraints"]["decide"] == "point"
    every = cons["drop_verdicts"]
    assert every and {v["verdict"] for v in every} <= set(VERDICTS)
    undecided = [v for v in every if v["verdict"] == "undecided"]
    assert undecided and all(v["drop_lo"] <= 0.02 < v["drop_hi"] for v in undecided)
    assert all(isinstance(v["more_items"], int) and v["more_items"] > 0 for v in undecided)
    assert all(v["drop_limit"] == 0.02 for v in every)
    assert {r["verdict"] for r in cons["recommendations"]} == {"within"}
    ranked = point["recommendations"]
    assert len(ranked) > len(cons["recommendations"]) and "undecided" in {r["verdict"] for r in ranked}
    assert all(r["drop"] <= 0.02 for r in ranked)  # point: undecided cells whose point estimate is within
    code, out, _ = run(capsys, *args[:-1], "--decide", "point")
    assert code == 0 and "undecided on the drop limit (ranked by the point estimate" in out
    assert "that fit" not in out

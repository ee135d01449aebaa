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


@pytest.mark.parametrize("args,needle", [
    (["--max-drop", "2"], "--max-drop '2'"),
    (["--vram", "lots"], "--vram 'lots': expected a number"),
    (["--vram", "-3"], "must be greater than 0"),
    (["--objective", "cost"], "needs --gpu-price"),
    (["--concurrency", "2.5"], "expected a whole number"),
    (["--task", "dq_arc_easy"], "go together"),
])
def test_malformed_input_is_one_clear_error(capsys, db, args, needle):
    code, _, err = run(capsys, "--db", db, *args)
    assert code == 2 and needle in err and "Traceback" not in err


def test_missing_db_and_unknown_model(capsys, tmp_path, db):
    code, _, err = run(capsys, "--db", str(tmp_path / "none.duckdb"))
    assert code == 3 and "no results database" in err
    code, _, err = run(capsys, "--db", db, "--model", "nope")
    assert code == 3 and "model-0" in err
    code, _, err = run(capsys, "--db", db, "--task", "dq_arc_easy", "--metric", "f1")
    assert code == 3 and "dq_arc_easy/acc" in err

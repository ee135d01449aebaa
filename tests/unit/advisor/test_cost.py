"""Cost per correct answer (advisor/cost.py): the arithmetic, the advisor's `--objective cost-per-correct`
over a real index, and the errors that name the missing price or a measure that counts no answers."""

import json

import numpy as np
import pandas as pd
import pytest

from advisor.cli import main
from advisor.cost import add_cost_per_correct, cost_table, is_accuracy
from advisor.synthetic import synthetic_tables, write_synthetic_db


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("cost") / "r.duckdb"
    write_synthetic_db(path, 3, seed=5)
    return str(path)


def test_dollars_and_kwh_per_thousand_correct():
    f = pd.DataFrame(
        {
            "level_req_s": [2.0, 2.0, np.nan],
            "q": [0.5, 0.8, 0.5],
            "level_j_per_request": [36.0, np.nan, 1.0],
            "price_per_hour": [np.nan, 3.0, 3.0],
        }
    )
    got = add_cost_per_correct(f.copy(), 7.2, None, None)
    # 2 req/s x 3600 x 0.5 = 3600 correct/h; $7.2/h -> $2 per 1,000 correct; 36 J / 0.5 x 1000 / 3.6e6 = 0.02 kWh
    assert got["correct_per_hour"][0] == pytest.approx(3600.0)
    assert got["usd_per_1k_correct"][0] == pytest.approx(2.0) and got["kwh_per_1k_correct"][0] == pytest.approx(0.02)
    assert np.isnan(got["kwh_per_1k_correct"][1])  # no energy reading: no figure, never an estimate
    assert np.isnan(got["usd_per_1k_correct"][2])  # no req/s at the level
    assert list(got["price_src"]) == ["--price-per-hour"] * 3
    stored = add_cost_per_correct(f.copy(), None, None, None)  # the matrix's price, where there is one
    assert np.isnan(stored["usd_per_1k_correct"][0]) and stored["usd_per_1k_correct"][1] == pytest.approx(3.0 / 5.76)
    assert stored["price_src"][0] == "no price"
    ppl = add_cost_per_correct(f.copy(), 7.2, None, "perplexity")
    assert ppl["usd_per_1k_correct"].isna().all()  # a perplexity counts no correct answers
    assert is_accuracy("exact_match,strict-match") and is_accuracy(None) and not is_accuracy("word_perplexity")


def test_the_objective_ranks_by_cost_per_correct_answer(capsys, db):
    code = main(["--db", db, "--objective", "cost-per-correct", "--gpu-price", "2.5", "--concurrency", "8", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0
    costs = [r["usd_per_1k_correct"] for r in doc["recommendations"]]
    assert costs == sorted(costs) and all(c > 0 for c in costs)
    best = doc["recommendations"][0]
    assert best["price_src"] == "--gpu-price" and best["price_per_hour_used"] == 2.5
    want = 2.5 / (best["correct_per_hour"]) * 1000
    assert best["usd_per_1k_correct"] == pytest.approx(want)
    assert best["kwh_per_1k_correct"] is None  # the synthetic index has no energy readings


def test_the_objective_needs_a_price_and_an_accuracy(capsys, db):
    assert main(["--db", db, "--objective", "cost-per-correct"]) == 2
    assert "needs a price: --price-per-hour" in capsys.readouterr().err
    code = main(
        [
            "--db",
            db,
            "--objective",
            "cost-per-correct",
            "--price-per-hour",
            "1",
            "--task",
            "dq_lambada",
            "--metric",
            "perplexity",
        ]
    )
    assert code == 2 and "is not an accuracy" in capsys.readouterr().err
    assert main(["--db", db, "--objective", "cost-per-correct", "--price-per-hour", "-1"]) == 2


def test_human_output_shows_the_cost_columns_and_how_they_are_defined(capsys, db):
    assert main(["--db", db, "--objective", "cost-per-correct", "--price-per-hour", "1.2", "--concurrency", "8"]) == 0
    out = capsys.readouterr().out
    assert "$ / 1k" in out and "kWh / 1k" in out and "measurable" in out  # headers wrap in a narrow table
    assert "price 1.2 $/h (--price-per-hour)" in out


def test_the_dashboards_cost_table_has_a_row_per_cell_and_level():
    cells, quality, perf = synthetic_tables(1, seed=2, distill=False)
    perf = perf.assign(requests=32, completed=32, failed=0)
    t = cost_table(cells, quality, perf, 3.0)
    assert len(t) == len(perf) and set(t["level"]) == {1, 8, 32}
    assert (t["usd_per_1k_correct"] > 0).all() and t["kwh_per_1k_correct"].isna().all()

"""Goodput at an asked SLO (advisor/slo.py) and the advisor's --slo-* / --min-goodput flags, against an index
ingested from real CellResult documents whose levels carry a stored SLO."""

import json

import pandas as pd
import pytest

from advisor.cli import NOTHING_FITS, main
from advisor.constraints import AdvisorInputError, Constraints, parse_ms, parse_percent
from advisor.slo import AskedSLO, best_at_slo, level_goodput
from harness.result import CellResult
from harness.store import db as store
from harness.store.rows import perf_rows
from tests.unit.store.test_curves import result


def consistent(cell_id: str) -> dict:
    """result()'s levels with a stored SLO (TTFT 500 ms, TPOT 50 ms, 90 %) whose figures agree with the
    percentiles: c16 (TTFT p50 900 ms) met it for half its requests."""
    r = result(cell_id)
    c16 = r["perf"]["levels"][2]
    c16.update(slo_attainment=0.5, slo_met=False, goodput_req_s=c16["req_s"] * 0.5)
    return r


def perf_frame() -> pd.DataFrame:
    return pd.DataFrame(perf_rows(CellResult.model_validate(consistent("c0ffee000001"))))


def test_the_same_slo_is_read_exactly_from_the_stored_levels():
    lv = level_goodput(perf_frame(), AskedSLO(500.0, 50.0, None, 90.0))
    assert list(lv["slo_rule"]) == ["exact"] * 3
    assert list(lv["meets"]) == [True, True, False]
    assert lv["goodput_lo"].tolist() == pytest.approx([0.45, 1.44, 1.5])
    best = best_at_slo(perf_frame(), AskedSLO(500.0, 50.0, None, 90.0)).iloc[0]
    assert best["slo_goodput"] == pytest.approx(1.44) and best["slo_level"] == "concurrency 4"
    assert "stored under the same SLO: exact" in best["slo_text"] and "90% of its 40 requests" in best["slo_text"]
    # the asked percentile, not the stored one, decides: at 95 % no level meets it
    none = best_at_slo(perf_frame(), AskedSLO(500.0, 50.0, None, 95.0)).iloc[0]
    assert none["slo_goodput"] == 0.0 and none["slo_text"].startswith("no level of 3 is shown to meet")


def test_a_different_slo_is_a_lower_bound_from_the_percentiles():
    # TTFT p99 of the sync level is 200 ms, of c4 400 ms; TPOT p99 30 and 37.5 ms; c16's TTFT p50 is 900 ms
    lv = level_goodput(perf_frame(), AskedSLO(450.0, 40.0, None, 90.0))
    assert list(lv["slo_rule"]) == ["percentiles"] * 3
    # each objective's p99 is within: at least floor(39 x 0.99) + 1 = 39 of 40 meet it; jointly >= 38
    assert lv["good_lo"].tolist() == [38.0, 38.0, 0.0]
    assert lv["goodput_lo"].tolist() == pytest.approx([38 / 80, 38 / 25, 0.0])
    assert list(lv["meets"]) == [True, True, False]
    # a looser asked SLO: the stored (stricter) count is used where it proves more than the percentiles
    loose = level_goodput(perf_frame(), AskedSLO(1000.0, 60.0, None, 50.0))
    assert loose["slo_rule"].tolist() == ["percentiles", "percentiles", "stricter stored SLO"]
    assert loose["good_lo"].tolist() == [38.0, 38.0, 20.0] and loose["meets"].tolist() == [True, True, True]


def test_units_parse_with_one_clear_error():
    assert parse_ms("--slo-ttft", "500ms") == 500.0
    assert parse_ms("--slo-ttft", "0.5s") == 500.0
    assert parse_ms("--slo-ttft", "250") == 250.0 and parse_ms("--slo-ttft", None) is None
    for bad in ("5x", "-1ms", "0ms", "nan", "ms", "1e999s"):
        with pytest.raises(AdvisorInputError, match=f"--slo-ttft '{bad}': expected a latency above 0 like '500ms'"):
            parse_ms("--slo-ttft", bad)
    assert parse_percent("--slo-percentile", "99%") == 99.0
    with pytest.raises(AdvisorInputError, match="within \\(0, 100\\]"):
        parse_percent("--slo-percentile", "120")
    with pytest.raises(AdvisorInputError, match="--min-goodput 2 counts requests that meet a latency SLO"):
        Constraints(min_goodput=2.0)
    with pytest.raises(AdvisorInputError, match="--objective goodput needs a latency SLO"):
        Constraints(objective="goodput")


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("slo") / "r.duckdb"
    fast = consistent("c0ffee000001")
    slow = consistent("c0ffee000002")  # every latency x3 and throughput /3: meets a tight SLO nowhere
    for lv in slow["perf"]["levels"]:
        for k in ("ttft_ms", "tpot_ms", "e2e_ms"):
            lv[k] = {s: v * 3 for s, v in lv[k].items()}
        lv["req_s"] /= 3
        lv["duration_s"] *= 3
        lv.update(slo_attainment=0.2, slo_met=False, goodput_req_s=lv["req_s"] * 0.2)
    store.ingest(path, [(r["plan"], r) for r in (fast, slow)])
    return str(path)


def advise(capsys, *args):
    code = main(["--host", "all", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_min_goodput_at_the_stored_slo(capsys, db):
    code, out, _ = advise(
        capsys, "--db", db, "--slo-ttft", "0.5s", "--slo-tpot", "50ms", "--min-goodput", "1", "--json"
    )
    assert code == 0
    doc = json.loads(out)
    assert [r["cell_id"] for r in doc["recommendations"]] == ["c0ffee000001"]
    best = doc["recommendations"][0]
    assert best["slo_goodput"] == pytest.approx(1.44) and best["slo_rule"] == "exact"
    assert "At the SLO: concurrency 4 meets TTFT <= 500 ms, TPOT <= 50 ms for 90% of requests" in doc["decision"]
    slo = doc["rejected"]["slo"]
    assert slo["count"] == 1 and slo["nearest"]["cell_id"] == "c0ffee000002" and slo["miss"] == pytest.approx(1.0)


def test_nothing_meets_a_goodput_above_every_level(capsys, db):
    code, out, _ = advise(capsys, "--db", db, "--slo-ttft", "450", "--min-goodput", "5")
    assert code == NOTHING_FITS
    assert "SLO TTFT <= 450 ms for 90% of requests, goodput >= 5 req/s" in out
    assert "req/s of goodput short at the SLO" in out and "a lower bound from the level's latency percentiles" in out


def test_goodput_objective_ranks_by_goodput_at_the_slo(capsys, db):
    code, out, _ = advise(capsys, "--db", db, "--slo-ttft", "2s", "--objective", "goodput", "--json")
    doc = json.loads(out)
    assert code == 0 and [r["cell_id"] for r in doc["recommendations"]] == ["c0ffee000001", "c0ffee000002"]
    gp = [r["slo_goodput"] for r in doc["recommendations"]]
    assert gp[0] > gp[1] > 0


def test_a_bad_unit_is_exit_2(capsys, db):
    code, _, err = advise(capsys, "--db", db, "--slo-tpot", "fast")
    assert code == 2 and "--slo-tpot 'fast': expected a latency above 0 like '500ms' or '0.5s'" in err

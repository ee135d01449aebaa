"""load.slo, load.steady_trim, load.noisy_cv and profiles' `repeats`: validation with one clear error
(field, value, fix), and late fields -- left out of the dumps a cell id hashes while at their defaults."""

import json
from pathlib import Path

import pytest

from harness.errors import SpecError
from harness.result import CellResult
from harness.spec import parse_matrix
from harness.spec.loadtest import SLO, LoadSpec
from harness.store.rows import perf_rows

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def problems(base_matrix, **load) -> list[str]:
    base_matrix["load"].update(load)
    with pytest.raises(SpecError) as e:
        parse_matrix(base_matrix)
    return e.value.problems


def test_slo_values_in_ms_or_with_a_unit():
    s = SLO(ttft_ms="500ms", tpot_ms="0.05s", e2e_ms=2000)
    assert (s.ttft_ms, s.tpot_ms, s.e2e_ms, s.percentile) == (500.0, 50.0, 2000.0, 90.0)


@pytest.mark.parametrize(
    ("slo", "where", "shown", "fix"),
    [
        ({"ttft_ms": -5}, "load.slo.ttft_ms", "got -5;", "a latency bound above 0"),
        ({"tpot_ms": "fast"}, "load.slo.tpot_ms", "got 'fast';", '("500ms", "0.5s")'),
        ({"ttft_ms": 500, "percentile": 0}, "load.slo.percentile", "got 0;", "percentile: 90"),
        ({"ttft_ms": 500, "percentile": 99.9}, None, None, None),
        ({"percentile": 90}, "load.slo", "", "give at least one of ttft_ms, tpot_ms, e2e_ms"),
        ({"ttft": 500}, "load.slo.ttft", "", "unknown field"),
    ],
)
def test_slo_errors_name_field_value_and_fix(base_matrix, slo, where, shown, fix):
    if where is None:
        assert parse_matrix(dict(base_matrix, load={**base_matrix["load"], "slo": slo})).load.slo.percentile == 99.9
        return
    (msg,) = [p for p in problems(base_matrix, slo=slo) if p.startswith(where)]
    assert shown in msg and fix in msg, msg


def test_repeats_and_trim_bounds(base_matrix):
    base_matrix["load"]["profiles"][0]["repeats"] = 0
    got = problems(base_matrix, steady_trim=0.5, noisy_cv=0)
    assert len(got) == 3
    assert any(p.startswith("load.profiles[0].repeats: got 0;") for p in got)
    assert any(p.startswith("load.steady_trim: got 0.5;") for p in got)
    assert any(p.startswith("load.noisy_cv: got 0;") for p in got)


def test_new_load_fields_stay_out_of_the_dump_at_their_defaults():
    plain = {"profiles": [{"kind": "synchronous"}, {"kind": "poisson", "rate": 2}]}
    dump = LoadSpec.model_validate(plain).model_dump(mode="json")
    for name in ("slo", "steady_trim", "noisy_cv", "max_failed"):
        assert name not in dump
    assert all("repeats" not in p for p in dump["profiles"])  # cell ids planned before these stay the same
    set_ = LoadSpec.model_validate(
        {"profiles": [{"kind": "synchronous", "repeats": 3}], "slo": {"ttft_ms": 500}, "noisy_cv": 0.2}
    ).model_dump(mode="json")
    assert set_["slo"]["ttft_ms"] == 500 and set_["noisy_cv"] == 0.2 and set_["profiles"][0]["repeats"] == 3


def test_poisson_repeats_count_toward_the_level_time_bound():
    with pytest.raises(ValueError, match="more than the 24 h"):
        LoadSpec.model_validate({"profiles": [{"kind": "poisson", "rate": 0.001, "requests": 50, "repeats": 2}]})


def test_results_measured_before_these_fields_still_load():
    doc = json.loads((FIXTURES / "result-v3.json").read_text())
    r = CellResult.model_validate(doc)
    lv = r.perf.levels[0]
    assert lv.goodput_req_s is None and lv.slo_attainment is None and lv.steady is None
    assert lv.repeats is None and lv.noisy is False and lv.schedule_lag_ms is None
    row = perf_rows(r)[0]
    assert row["repeats"] == 1 and row["noisy"] is False and row["goodput_req_s"] is None

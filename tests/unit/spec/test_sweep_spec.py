"""`{kind: sweep}` load profiles: defaults, bounds, and one clear error (field, value, fix) per mistake."""

import pytest

from harness.errors import SpecError
from harness.plan.memory_estimate import top_concurrency
from harness.spec import parse_matrix
from harness.spec.loadtest import LoadSpec, SweepProfile


def problems(base_matrix, *profiles) -> list[str]:
    base_matrix["load"]["profiles"] = list(profiles)
    with pytest.raises(SpecError) as e:
        parse_matrix(base_matrix)
    return e.value.problems


def test_defaults_follow_the_issue_and_bound_the_cell():
    s = SweepProfile(kind="sweep")
    assert (s.rates, s.requests, s.max_concurrency, s.arrival, s.max_level_s) == (4, 16, 16, "constant", 120.0)
    assert (s.min_achieved, s.ttft_growth, s.repeats) == (0.9, 2.0, 1)
    assert s.level_count() == 6 and s.prompt_count() == 96


def test_a_matrix_with_a_sweep_parses_and_its_concurrency_sizes_the_memory_estimate(base_matrix):
    base_matrix["load"]["profiles"] = [
        {"kind": "synchronous"},
        {"kind": "sweep", "rates": 3, "requests": 24, "max_concurrency": 24, "arrival": "poisson", "seed": 5},
    ]
    m = parse_matrix(base_matrix)
    sweep = m.load.profiles[1]
    assert isinstance(sweep, SweepProfile) and sweep.arrival == "poisson" and sweep.seed == 5
    assert top_concurrency(m.load) == 24


@pytest.mark.parametrize(
    ("profile", "where", "says"),
    [
        ({"requests": 8, "max_concurrency": 16}, "load.profiles[0]:", "set requests >= 16 or max_concurrency <= 8"),
        ({"requests": 4, "max_concurrency": 2}, "load.profiles[0].requests: got 4;", "greater than or equal to 6"),
        ({"rates": 0}, "load.profiles[0].rates: got 0;", "greater than or equal to 1"),
        ({"arrival": "bursty"}, "load.profiles[0].arrival: got 'bursty';", "'constant' or 'poisson'"),
        ({"min_achieved": 1.5}, "load.profiles[0].min_achieved: got 1.5;", "less than or equal to 1"),
        ({"ttft_growth": 1}, "load.profiles[0].ttft_growth: got 1;", "greater than 1"),
        ({"max_level_s": 0}, "load.profiles[0].max_level_s: got 0;", "greater than 0"),
        ({"rate": 3}, "load.profiles[0].rate:", "unknown field"),
    ],
)
def test_mistakes_name_field_value_and_fix(base_matrix, profile, where, says):
    (msg,) = problems(base_matrix, {"kind": "sweep", **profile})
    assert msg.startswith(where) and says in msg, msg


def test_one_sweep_per_cell(base_matrix):
    (msg,) = problems(base_matrix, {"kind": "sweep"}, {"kind": "synchronous"}, {"kind": "sweep", "rates": 2})
    assert msg.startswith("load: ") and "2 sweep profiles (at [0, 2])" in msg and "keep one" in msg


def test_matrices_without_a_sweep_dump_as_before():
    plain = {"profiles": [{"kind": "synchronous"}, {"kind": "concurrency", "levels": [1, 4]}]}
    dump = LoadSpec.model_validate(plain).model_dump(mode="json")
    assert dump["profiles"] == [
        {"kind": "synchronous", "requests": 8},
        {"kind": "concurrency", "levels": [1, 4], "requests": 32},
    ]

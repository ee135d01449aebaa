"""load.max_failed: a level with more failed requests than allowed is not a data point."""

import pytest
from pydantic import ValidationError

from harness.measure.level import aggregate
from harness.measure.request import RequestRecord
from harness.measure.run import level_problem
from harness.spec.loadtest import LoadSpec, MaxFailed


def level(profile, n, failed, level=1, abandoned=0):
    recs = [RequestRecord(ok=True, start=float(i), end=i + 1.0, ttft=0.1, output_tokens=4) for i in range(n - failed)]
    recs += [RequestRecord(ok=False, start=100.0 + i, end=101.0 + i, error=f"HTTP 500: e{i}") for i in range(failed)]
    recs += [
        RequestRecord(ok=False, start=200.0, end=200.0, abandoned=True, error="not completed: dead")
        for _ in range(abandoned)
    ]
    return aggregate(profile, level, recs)


def test_defaults_no_failure_when_synchronous_five_percent_otherwise():
    mf = MaxFailed()
    assert level_problem(level("synchronous", 8, 0), mf) is None
    msg = level_problem(level("synchronous", 8, 1), mf)
    assert msg.startswith("load level synchronous: 1/8 requests failed") and "load.max_failed.synchronous" in msg
    assert "first error: HTTP 500: e0" in msg
    assert level_problem(level("concurrency", 40, 2, level=4), mf) is None  # 5 % exactly
    msg = level_problem(level("concurrency", 40, 3, level=4), mf)
    assert "concurrency 4: 3/40" in msg and "5%" in msg and "load.max_failed.other" in msg
    assert "poisson 2 req/s" in level_problem(level("poisson", 10, 1, level=2.0), mf)


def test_abandoned_requests_count_as_failed_and_the_first_error_is_a_real_one():
    lv = level("concurrency", 10, 1, level=2, abandoned=4)
    assert (lv.requests, lv.completed, lv.failed, lv.abandoned) == (14, 9, 5, 4)
    assert lv.first_error == "HTTP 500: e0"
    assert lv.duration_s == 101.0  # 0 .. 101: abandoned requests were never timed


def test_configured_thresholds_and_bounds():
    spec = LoadSpec(profiles=[{"kind": "synchronous"}], max_failed={"synchronous": 0.5, "other": 0.0})
    assert level_problem(level("synchronous", 4, 2), spec.max_failed) is None
    assert level_problem(level("concurrency", 4, 1, level=2), spec.max_failed)
    for bad in ({"synchronous": 1.5}, {"other": -0.1}, {"others": 0.1}):
        with pytest.raises(ValidationError):
            LoadSpec(profiles=[{"kind": "synchronous"}], max_failed=bad)


def test_default_threshold_leaves_the_load_block_and_so_cell_ids_unchanged():
    spec = LoadSpec(profiles=[{"kind": "synchronous"}])
    assert "max_failed" not in spec.model_dump(mode="json")
    assert LoadSpec.model_validate(spec.model_dump(mode="json")) == spec
    custom = LoadSpec(profiles=[{"kind": "synchronous"}], max_failed={"other": 0.2})
    assert custom.model_dump(mode="json")["max_failed"] == {"synchronous": 0.0, "other": 0.2}
    assert LoadSpec.model_validate(custom.model_dump(mode="json")) == custom

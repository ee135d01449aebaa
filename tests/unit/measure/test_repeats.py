"""Repeated levels: mean, Student-t 95 % CI and CV over the runs, the noise flag, and measure() running
each level `repeats` times with fresh prompts and checking the server between runs."""

import math

import pytest

from harness.measure import run as run_mod
from harness.measure.level import combine
from harness.measure.loadgen import LoadGenerator
from harness.measure.repeats import spread, t975
from harness.measure.request import RequestRecord
from harness.result import Level
from harness.spec.loadtest import LoadSpec


def test_t_quantiles():
    assert t975(1) == pytest.approx(12.7062) and t975(2) == pytest.approx(4.3027)
    # beyond the table the expansion stays within 1e-4 of scipy.stats.t.ppf(0.975, df)
    for df, want in ((30, 2.0423), (31, 2.03951), (60, 2.00030), (99, 1.98422)):
        assert t975(df) == pytest.approx(want, abs=1e-4)
    with pytest.raises(ValueError):
        t975(0)


def test_spread_by_hand():
    s = spread([10.0, 12.0, 14.0])
    half = 4.3027 * 2.0 / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(n), sd = 2
    assert s.mean == 12.0 and s.ci95 == pytest.approx([12 - half, 12 + half])
    assert s.cv == pytest.approx(2 / 12) and s.values == [10.0, 12.0, 14.0]
    assert spread([5.0]) is None and spread([None, 3.0]) is None
    assert spread([0.0, 0.0]).cv is None


def run_of(tokens_per_s, n=4, ttft=0.1):
    """n one-at-a-time requests, each 1 s long with `tokens_per_s` tokens."""
    out = []
    for i in range(n):
        k = tokens_per_s
        out.append(
            RequestRecord(
                ok=True, start=float(i), end=i + 1.0, ttft=ttft, itl=[0.9 / (k - 1)] * (k - 1), output_tokens=k
            )
        )
    return out


def test_combined_level_pools_runs_and_reports_their_spread():
    runs = [run_of(10), run_of(12), run_of(14)]
    lv = combine("concurrency", 1, runs, noisy_cv=0.1)
    assert lv.requests == 12 and lv.duration_s == pytest.approx(12.0)
    assert lv.output_tok_s == pytest.approx((40 + 48 + 56) / 12)
    rep = lv.repeats
    assert rep.n == 3 and rep.output_tok_s.values == pytest.approx([10, 12, 14])
    assert rep.output_tok_s.cv == pytest.approx(2 / 12)
    assert rep.ttft_ms_p50.cv == pytest.approx(0.0)
    # more tokens in the same second: a shorter TPOT too (100, 82, 69 ms)
    assert lv.noisy is True and rep.noisy_figures == ["output_tok_s", "tpot_ms_p50"]
    assert combine("concurrency", 1, runs, noisy_cv=0.2).noisy is False
    stored = lv.model_dump(mode="json")
    assert Level.model_validate(stored).repeats.output_tok_s.ci95[0] < 12  # the stored shape reads back
    single = combine("concurrency", 1, runs[:1])
    assert single.repeats is None and single.noisy is False


def spec(**kw):
    return LoadSpec.model_validate(
        {"warmup_requests": 0, "profiles": [{"kind": "concurrency", "levels": [2], "requests": 3, **kw}]}
    )


def fake(monkeypatch, health_after=None):
    """measure() against no server: prompts are numbers, each run's records are synthetic."""
    sent: list[list] = []
    monkeypatch.setattr(run_mod, "build_requests", lambda load, src, n: list(range(n)))

    def records(self, profile, prompts, level, seed=0):
        sent.append(prompts)
        return run_of(10 + len(sent), n=len(prompts))

    monkeypatch.setattr(LoadGenerator, "records", records)
    calls = {"n": 0}

    def health():
        calls["n"] += 1
        return "server gone" if health_after and calls["n"] > health_after else None

    return sent, health


def test_measure_runs_a_repeated_level_with_fresh_prompts(monkeypatch):
    sent, health = fake(monkeypatch)
    out = run_mod.measure("http://x/v1", "m", spec(repeats=3), "tok", health=health)
    assert sent == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    (lv,) = out.levels
    assert lv.repeats.n == 3 and lv.requests == 9 and out.stopped is None


def test_measure_stops_between_runs_when_the_server_is_gone(monkeypatch):
    sent, health = fake(monkeypatch, health_after=1)
    out = run_mod.measure("http://x/v1", "m", spec(repeats=3), "tok", health=health)
    assert len(sent) == 2 and out.stopped == "server gone"
    assert out.levels[0].repeats.n == 2

"""Efficiency and overhead fits: which evidence each prediction rests on, and (by simulation) that a 90 %
prediction interval holds about 90 % of new cells when the cells follow the model."""

import math
import random

import pytest

from harness.predict.fit import (
    DEFAULT_EFFICIENCY,
    Point,
    efficiency_points,
    fit_efficiency,
    fit_overhead,
    overhead_points,
    t_quantile,
)
from tests.unit.predict.conftest import FIGS, case, obs


def test_t_quantiles():
    assert t_quantile(1) == pytest.approx(6.314) and t_quantile(10) == pytest.approx(1.812)
    assert t_quantile(11) == pytest.approx((1.812 + 1.782) / 2) and t_quantile(math.inf) == pytest.approx(1.645)


def pts(kernel, level, *effs, engine="vllm"):
    return [Point("decode", engine, kernel, level, math.log(e), f"{kernel}{level}{i}") for i, e in enumerate(effs)]


def test_own_kernel_first_then_the_engine_then_a_stated_default():
    p = pts("vllm:bf16", 1, 0.5, 0.6) + pts("vllm:w4a16", 1, 0.1, 0.12) + pts("llamacpp:gguf-Q4_K_M", 1, 0.8)
    own = fit_efficiency(p, "decode", "vllm", "vllm:w4a16", 1, "cpu")
    assert math.exp(own.value) == pytest.approx(math.sqrt(0.1 * 0.12), rel=0.02) and own.n == 2
    other = fit_efficiency(p, "decode", "vllm", "vllm:w8a8-int8", 1, "cpu")
    assert "not measured here" in other.basis and other.sd_pred > own.sd_pred
    none = fit_efficiency(p, "decode", "vllm", "vllm:fp8", 1, "cuda")
    assert none.source == "fitted"  # vllm cells exist on this host: the engine's mean
    default = fit_efficiency([], "decode", "vllm", "vllm:bf16", 1, "cuda")
    assert default.source == "default" and math.exp(default.value) == DEFAULT_EFFICIENCY[("cuda", "vllm")]["decode"]


def test_levels_interpolate_in_log_concurrency_and_extrapolate_with_more_spread():
    p = pts("k", 1, 0.2, 0.2) + pts("k", 16, 0.8, 0.8)
    mid = fit_efficiency(p, "decode", "vllm", "k", 4, "cpu")
    assert math.exp(mid.value) == pytest.approx(math.exp((math.log(0.2) + math.log(0.8)) / 2))
    far = fit_efficiency(p, "decode", "vllm", "k", 256, "cpu")
    near = fit_efficiency(p, "decode", "vllm", "k", 16, "cpu")
    assert far.value == near.value and far.sd_pred > near.sd_pred and "extrapolated" in far.basis


@pytest.mark.parametrize("sizes", [(1, 2, 3, 5), (1, 1, 2)])
def test_efficiency_intervals_hold_about_90_percent_of_new_cells(sizes):
    rng = random.Random(7)
    hits, reps, sigma = 0, 1500, 0.3
    for _ in range(reps):
        mus = [rng.gauss(-1, 1) for _ in sizes]
        p = [
            Point("decode", "vllm", f"k{k}", 1.0, rng.gauss(mus[k], sigma), f"c{k}{j}")
            for k, n in enumerate(sizes)
            for j in range(n)
        ]
        k = rng.randrange(len(sizes))
        lo, hi = fit_efficiency(p, "decode", "vllm", f"k{k}", 1.0, "cpu").interval()
        hits += lo <= rng.gauss(mus[k], sigma) <= hi
    assert 0.86 <= hits / reps <= 0.94


def test_efficiency_points_from_observations():
    o = obs("a", case("bf16"), levels=[(1, 20.0, 50.0, 100.0), (16, 150.0, 100.0, 900.0)])
    p = efficiency_points([o], FIGS)
    assert {(x.figure, x.level) for x in p} == {(f, lv) for f in ("decode", "tpot", "ttft") for lv in (1.0, 16.0)}
    assert all(x.kernel == "vllm:bf16" for x in p)


def test_overhead_is_peak_minus_weights_minus_kv_per_engine():
    a = obs("a", case("bf16"), peak=3.9)
    b = obs("b", case("w8a8"), peak=3.7)
    g = obs("g", case("gguf-q4_k_m", kv_gib=0.7), peak=0.9)
    points = overhead_points([a, b, g])
    f = fit_overhead(points, "vllm", "cpu")
    assert f.n == 2 and f.value == pytest.approx(((3.9 - a.weights_gib - 1) + (3.7 - b.weights_gib - 1)) / 2)
    assert fit_overhead(points, "llamacpp", "cpu").n == 1
    d = fit_overhead([], "vllm", "cuda")
    assert d.source == "default" and d.value == 1.5


def test_an_engine_never_run_here_borrows_its_kernels_efficiency_from_other_hosts():
    here = pts("vllm:bf16", 1, 0.5)
    far = [
        Point("decode", "llamacpp", "llamacpp:gguf-Q4_K_M", 1, math.log(e), f"o{h}", f"h{h}")
        for h, e in enumerate((0.4, 0.6))
    ]
    f = fit_efficiency(here, "decode", "llamacpp", "llamacpp:gguf-Q4_K_M", 1, "cpu", far)
    assert "2 other host(s)" in f.basis and math.exp(f.value) == pytest.approx(math.sqrt(0.4 * 0.6))
    # the engine ran here: this host's evidence first, other hosts are not consulted
    mine = fit_efficiency(pts("llamacpp:gguf-Q8_0", 1, 0.9, engine="llamacpp"), "decode", "llamacpp",
                          "llamacpp:gguf-Q4_K_M", 1, "cpu", far)  # fmt: skip
    assert "not measured here" in mine.basis
    assert fit_efficiency(here, "decode", "llamacpp", "llamacpp:gguf-Q4_K_M", 1, "cpu", []).source == "default"


def test_an_engine_never_run_here_borrows_its_overhead_from_other_hosts():
    f = fit_overhead([("vllm", "cpu", 2.6)], "llamacpp", "cpu", [("llamacpp", "cpu", 0.1), ("llamacpp", "cpu", 0.3)])
    assert f.value == pytest.approx(0.2) and "other hosts" in f.basis and f.n == 2


def test_a_memory_interval_never_goes_below_weights_and_kv():
    from harness.predict.predict import memory_estimate

    g = obs("g", case("gguf-q4_k_m", kv_gib=0.7), peak=0.75)  # an overhead of about -0.05 GiB (PSS sampling)
    w, kv, mem = memory_estimate(case("gguf-q8_0", kv_gib=0.1), [g], None)
    assert mem.lo >= round(w + kv, 3) - 1e-9 and mem.lo <= mem.value <= mem.hi

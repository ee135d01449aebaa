"""Fits on measured cells, each with a prediction interval: the engine's memory overhead and the speed
efficiency (measured / roofline limit) per host x engine x kernel x concurrency.

Speed. For every measured closed-loop level, efficiency = output tok/s / decode limit (`decode`), TPOT floor /
TPOT p50 (`tpot`) and TTFT floor / TTFT p50 (`ttft`), on the host's figures (harness/predict/roofline.py).
Efficiencies are modelled as log-normal: log eff = the mean of its group + noise. A prediction for (kernel,
level) takes, in order:
  1. the kernel's own mean at that level (interpolated in log concurrency between measured levels; beyond
     them the nearest level's, with extra spread EXTRAPOLATION_SD per e-fold of concurrency);
  2. else the mean over the engine's other kernels at that level, with their between-kernel spread added;
  3. else (the engine never ran on this host) the kernel's mean on other hosts whose figures are known, with
     their between-host spread (DEFAULT_LOG_SD from a single host): an efficiency is a ratio to the host's own
     roofline, so it travels between hosts better than a raw tok/s does, not perfectly;
  4. else a stated default (DEFAULT_EFFICIENCY), log-sd DEFAULT_LOG_SD.
The spread is the pooled within-group sd of the host's groups (all figures' groups of at least two cells),
and the interval is mean +- t(df) x sd x sqrt(1 + 1/n): a prediction interval under the model, whose
calibration tests/unit/predict/test_fit.py checks by simulation and bench/predict_accuracy.py on real cells.

Memory. overhead = measured peak - the module-wise weights estimate - the KV the engine held; per host x
engine x device its mean and pooled sd, the same t interval; else (the engine never ran on this host) the
same engine's cells on other hosts, with their spread; else the documented default of
harness/serving_memory.DEFAULT_OVERHEAD_GIB with sd DEFAULT_OVERHEAD_SD. Pure.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from harness.hw.figures import HostFigures
from harness.predict.cost import ModelCost, model_cost
from harness.predict.observe import Case, Observation
from harness.predict.roofline import decode_limit, mean_context, prefill_limit
from harness.serving_memory import default_overhead

LEVEL = 0.90  # every interval here is a 90 % prediction interval
# one-sided 95 % quantiles of Student's t by degrees of freedom (two-sided 90 % intervals)
_T95 = {1: 6.314, 2: 2.920, 3: 2.353, 4: 2.132, 5: 2.015, 6: 1.943, 7: 1.895, 8: 1.860, 9: 1.833, 10: 1.812,
        12: 1.782, 15: 1.753, 20: 1.725, 25: 1.708, 30: 1.697, 40: 1.684, 60: 1.671, 120: 1.658}  # fmt: skip
Z90 = 1.645

# Assumed efficiencies where nothing of that engine was measured on the host: not measured by dqbench.
# GPU: vLLM decodes small batches at roughly 60-80 % of the bandwidth roofline with CUDA graphs, and prefills
# at 40-60 % of dense tensor peak; CPU engines run far from the roofline on few cores (the scheduler and
# Python take a share of every step): 0.3 stands in. The log-sd DEFAULT_LOG_SD makes the 90 % interval span
# about x/3.2 either way, so a default reads as what it is: an order of magnitude.
DEFAULT_EFFICIENCY: dict[tuple[str, str], dict[str, float]] = {
    ("cuda", "vllm"): {"decode": 0.6, "tpot": 0.7, "ttft": 0.5},
    ("cuda", "llamacpp"): {"decode": 0.5, "tpot": 0.6, "ttft": 0.4},
    ("cpu", "vllm"): {"decode": 0.3, "tpot": 0.3, "ttft": 0.3},
    ("cpu", "llamacpp"): {"decode": 0.3, "tpot": 0.3, "ttft": 0.3},
}
DEFAULT_LOG_SD = 0.7
EXTRAPOLATION_SD = 0.3  # extra log-sd per e-fold of concurrency beyond the measured levels (an assumption)
DEFAULT_OVERHEAD_SD = 0.5  # GiB, the documented default overhead's spread (an assumption)
FIGURES = ("decode", "tpot", "ttft")


def t_quantile(df: float) -> float:
    """The 95th percentile of Student's t with `df` degrees of freedom (1.645 for df = inf)."""
    if df == math.inf or df > 120:
        return Z90
    df = max(1.0, df)
    keys = sorted(_T95)
    lo = max(k for k in keys if k <= df)
    hi = min((k for k in keys if k >= df), default=lo)
    if hi == lo:
        return _T95[lo]
    return _T95[lo] + (_T95[hi] - _T95[lo]) * (df - lo) / (hi - lo)


@dataclass(frozen=True)
class Fitted:
    """A fitted quantity: its point value, the sd of a new observation around it (sd_pred, already with the
    1/n term), the degrees of freedom of that sd, how many cells it rests on and how it was obtained."""

    value: float
    sd_pred: float
    df: float
    n: int
    basis: str
    source: str  # fitted | default

    def interval(self) -> tuple[float, float]:
        half = t_quantile(self.df) * self.sd_pred
        return self.value - half, self.value + half


# ------------------------------------------------------------------------------------------ speed


def case_cost(case: Case) -> ModelCost | None:
    from harness.predict.cost import kv_bytes

    if case.arch is None:
        return None
    kv_dtype = case.scheme.kv_dtype(case.activation_dtype)
    return model_cost(case.arch, case.scheme.quant, kv_bytes(case.arch, kv_dtype))


def floors(case: Case, figs: HostFigures, level: float) -> dict[str, float]:
    """The roofline's bounds of the three figures at concurrency `level`: decode tok/s (an upper bound),
    TPOT and TTFT in ms (lower bounds)."""
    cost = case_cost(case)
    if cost is None:
        raise ValueError(f"{case.model}: no architecture facts, so no roofline")
    dtype = case.scheme.compute_dtype(case.activation_dtype)
    ctx = mean_context(case.input_tokens, case.output_tokens)
    dec = decode_limit(cost, figs, dtype, ctx, level).tok_s
    pre = prefill_limit(cost, figs, dtype, max(1, case.input_tokens)).tok_s
    return {"decode": dec, "tpot": 1000.0 * level / dec, "ttft": 1000.0 * case.input_tokens / pre}


@dataclass(frozen=True)
class Point:
    figure: str
    engine: str
    kernel: str
    level: float
    log_eff: float
    cell_id: str
    host: str = ""


def efficiency_points(obs: Iterable[Observation], figs: HostFigures | dict[str, HostFigures | None]) -> list[Point]:
    """Every measured level's log-efficiencies, on its host's figures (`figs`: one host's, or by host id)."""
    out = []
    for o in obs:
        f_host = figs.get(o.host_id) if isinstance(figs, dict) else figs
        if o.case.arch is None or f_host is None:
            continue
        for lv in o.levels:
            f = floors(o.case, f_host, lv.concurrency)
            measured = {"decode": lv.output_tok_s, "tpot": lv.tpot_ms_p50, "ttft": lv.ttft_ms_p50}
            for fig in FIGURES:
                m = measured[fig]
                if not m or m <= 0:
                    continue
                eff = m / f[fig] if fig == "decode" else f[fig] / m
                out.append(
                    Point(fig, o.engine, o.case.scheme.kernel, lv.concurrency, math.log(eff), o.cell_id, o.host_id)
                )
    return out


def pooled_sd(groups: Iterable[list[float]]) -> tuple[float | None, int]:
    """(pooled within-group sd, its degrees of freedom) over groups of >= 2 values."""
    ss = df = 0.0
    for g in groups:
        if len(g) >= 2:
            m = statistics.fmean(g)
            ss += sum((x - m) ** 2 for x in g)
            df += len(g) - 1
    return (math.sqrt(ss / df), int(df)) if df else (None, 0)


def _by_level(points: list[Point]) -> dict[float, list[float]]:
    d: dict[float, list[float]] = defaultdict(list)
    for p in points:
        d[p.level].append(p.log_eff)
    return d


def _at_level(levels: dict[float, list[float]], c: float) -> tuple[float, int, float, str]:
    """(mean log eff at concurrency c, cells behind it, extra variance, how): interpolated in log c between
    measured levels, the nearest one's beyond them."""
    ks = sorted(levels)
    if c in levels:
        return statistics.fmean(levels[c]), len(levels[c]), 0.0, f"c={c:g}"
    below = [k for k in ks if k < c]
    above = [k for k in ks if k > c]
    if below and above:
        a, b = below[-1], above[0]
        w = (math.log(c) - math.log(a)) / (math.log(b) - math.log(a))
        m = (1 - w) * statistics.fmean(levels[a]) + w * statistics.fmean(levels[b])
        return m, min(len(levels[a]), len(levels[b])), 0.0, f"interpolated between c={a:g} and c={b:g}"
    near = below[-1] if below else above[0]
    extra = (EXTRAPOLATION_SD * abs(math.log(c / near))) ** 2
    return statistics.fmean(levels[near]), len(levels[near]), extra, f"c={near:g} extrapolated to c={c:g}"


def fit_efficiency(
    points: list[Point],
    figure: str,
    engine: str,
    kernel: str,
    level: float,
    device: str,
    others: list[Point] | None = None,
) -> Fitted:
    """The log-efficiency to predict `figure` of `kernel` at concurrency `level` from this host's `points`
    (and, where the engine never ran here, `others`: other hosts' points), see the module doc."""
    mine = [p for p in points if p.figure == figure]
    groups: dict[tuple[str, float], list[float]] = defaultdict(list)
    for p in points:
        groups[(p.figure + p.kernel, p.level)].append(p.log_eff)
    sd_w, df_w = pooled_sd(groups.values())
    own = [p for p in mine if p.kernel == kernel]
    if own:
        m, n, extra, how = _at_level(_by_level(own), level)
        sd = sd_w if sd_w is not None else DEFAULT_LOG_SD
        df = df_w if sd_w is not None else math.inf
        cells = len({p.cell_id for p in own})
        return Fitted(
            m,
            math.sqrt(sd**2 * (1 + 1 / n) + extra),
            df,
            cells,
            f"{kernel} at {how}, {cells} cell(s)" + ("" if sd_w is not None else "; spread assumed"),
            "fitted",
        )
    same_engine = [p for p in mine if p.engine == engine]
    if same_engine:
        per_kernel: dict[str, list[Point]] = defaultdict(list)
        for p in same_engine:
            per_kernel[p.kernel].append(p)
        means, extras = [], []
        for pts in per_kernel.values():
            m, _, extra, _ = _at_level(_by_level(pts), level)
            means.append(m)
            extras.append(extra)
        k = len(means)
        between = statistics.stdev(means) if k >= 2 else DEFAULT_LOG_SD
        within = sd_w if sd_w is not None else 0.0
        sd = math.sqrt(between**2 * (1 + 1 / k) + within**2 + statistics.fmean(extras))
        cells = len({p.cell_id for p in same_engine})
        return Fitted(
            statistics.fmean(means),
            sd,
            k - 1 if k >= 2 else math.inf,
            cells,
            f"{kernel} not measured here: the mean of {engine}'s {k} other kernel(s) at c={level:g}, "
            f"{cells} cell(s)" + ("" if k >= 2 else "; between-kernel spread assumed"),
            "fitted",
        )
    far = [p for p in others or [] if p.figure == figure and p.kernel == kernel]
    if far:
        per_host: dict[str, list[Point]] = defaultdict(list)
        for p in far:
            per_host[p.host].append(p)
        means, extras = [], []
        for pts in per_host.values():
            m, _, extra, _ = _at_level(_by_level(pts), level)
            means.append(m)
            extras.append(extra)
        h = len(means)
        between = statistics.stdev(means) if h >= 2 else DEFAULT_LOG_SD
        within = sd_w if sd_w is not None else 0.0
        cells = len({p.cell_id for p in far})
        return Fitted(
            statistics.fmean(means),
            math.sqrt(between**2 * (1 + 1 / h) + within**2 + statistics.fmean(extras)),
            h - 1 if h >= 2 else math.inf,
            cells,
            f"{engine} never ran on this host: {kernel}'s efficiency on {h} other host(s), {cells} cell(s)"
            + ("" if h >= 2 else "; between-host spread assumed"),
            "fitted",
        )
    eff = DEFAULT_EFFICIENCY.get((device, engine), DEFAULT_EFFICIENCY[("cuda", "vllm")])[figure]
    return Fitted(
        math.log(eff),
        DEFAULT_LOG_SD,
        math.inf,
        0,
        f"nothing of {engine} measured on this host: assumed efficiency {eff:g} of the roofline "
        "(harness/predict/fit.DEFAULT_EFFICIENCY, not measured)",
        "default",
    )


# ------------------------------------------------------------------------------------------ memory


def overhead_points(obs: Iterable[Observation]) -> list[tuple[str, str, float]]:
    """(engine, device, overhead GiB) of every measured cell with a host-RAM peak (CPU cells: a GPU's NVML peak
    holds vLLM's preallocated pool, not what the cell needs)."""
    out = []
    for o in obs:
        if o.peak_gib is None or o.weights_gib is None or o.case.device != "cpu":
            continue
        out.append((o.engine, o.case.device, o.peak_gib - o.weights_gib - o.case.kv_gib))
    return out


def fit_overhead(
    points: list[tuple[str, str, float]], engine: str, device: str, others: list[tuple[str, str, float]] | None = None
) -> Fitted:
    """The engine's overhead from this host's `points`, else from other hosts' (`others`), else the default."""
    mine = [x for e, d, x in points if e == engine and d == device]
    per_engine: dict[str, list[float]] = defaultdict(list)
    for e, d, x in points:
        if d == device:
            per_engine[e].append(x)
    sd_w, df_w = pooled_sd(per_engine.values())
    if mine:
        n = len(mine)
        sd = sd_w if sd_w is not None else DEFAULT_OVERHEAD_SD
        return Fitted(
            statistics.fmean(mine),
            sd * math.sqrt(1 + 1 / n),
            df_w if sd_w is not None else math.inf,
            n,
            f"{engine} overhead measured on {n} cell(s) of this host (peak - weights - KV)"
            + ("" if sd_w is not None else f"; spread assumed {DEFAULT_OVERHEAD_SD:g} GiB"),
            "fitted",
        )
    far = [x for e, d, x in others or [] if e == engine and d == device]
    if far:
        sd = statistics.stdev(far) if len(far) >= 2 else DEFAULT_OVERHEAD_SD
        return Fitted(
            statistics.fmean(far),
            sd * math.sqrt(1 + 1 / len(far)),
            len(far) - 1 if len(far) >= 2 else math.inf,
            len(far),
            f"{engine} never ran on this host: its overhead on {len(far)} cell(s) of other hosts",
            "fitted",
        )
    gib, src = default_overhead(engine, device)
    return Fitted(gib, DEFAULT_OVERHEAD_SD, math.inf, 0, f"{src} (harness/serving_memory.py)", "default")

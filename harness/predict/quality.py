"""The predicted quality drop of a scheme: relative to the model it is applied to (avg_acc, 0.02 = 2 %), as a
90 % prediction interval, from the best evidence there is, in this order:

1. a fidelity pass of the cell itself (its KL against the parent, measured without lm-eval): the KL -> drop
   relation fitted on this host's measured cells. Dutta et al. (NeurIPS 2024, "Accuracy is Not All You Need",
   arXiv:2407.09141) show that KL divergence and answer flips track the accuracy change of compressed models;
   the relation fitted here is drop = b x sqrt(KL) (the drop grows quickly at small KL and saturates at large
   KL) with additive noise tau^2 + the measurement's own variance, weighted least squares with tau by moments.
2. measured cells of the same model family on this host with the same scheme family (w4a16-gptq ...), else
   the same bits class (any 4-bit scheme): their mean drop, with the pooled spread of such groups.
3. a prior per scheme family from published evidence (PRIORS, each with its source), for models and hosts
   nothing was measured on. The published figures are for 8B-405B models; smaller models lose more (this
   project measured 5-25 % on a 135M model's int4 cells), so a prior is where a prediction starts, not where
   it should stay.

Every interval is checked: tests/unit/predict/test_quality.py simulates the relation and counts coverage;
bench/predict_accuracy.py counts it on real cells (leave-one-out). Pure.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from harness.predict.fit import Fitted, pooled_sd
from harness.predict.observe import Case, Observation
from harness.predict.schemes import Scheme

KURTIC = (
    'Kurtic et al., "Give Me BF16 or Give Me Death? Accuracy-Performance Trade-Offs in LLM Quantization", '
    "ACL 2025 (arXiv:2411.02355)"
)
LLAMACPP_KLD = (
    "llama.cpp tools/perplexity/README.md, LLaMA 3 8B scoreboard (mean KLD vs FP16, no imatrix): "
    "https://github.com/ggml-org/llama.cpp/blob/master/tools/perplexity/README.md"
)
DUTTA = 'Dutta et al., "Accuracy is Not All You Need", NeurIPS 2024 (arXiv:2407.09141)'


@dataclass(frozen=True)
class Prior:
    mid: float  # relative drop, 0.02 = 2 %
    lo: float  # the 90 % range
    hi: float
    source: str


# llama.cpp's mean KLD per GGUF type on Llama-3-8B (LLAMACPP_KLD)
GGUF_KLD = {
    "Q8_0": 0.001391,
    "Q6_K": 0.005669,
    "Q5_K_M": 0.011093,
    "Q5_K_S": 0.017177,
    "Q5_1": 0.018485,
    "Q5_0": 0.022964,
    "Q4_K_M": 0.032032,
    "Q4_K_S": 0.044040,
    "Q4_1": 0.072530,
    "Q4_0": 0.073598,
    "Q3_K_L": 0.088558,
    "Q3_K_M": 0.103797,
    "Q3_K_S": 0.236401,
    "Q2_K": 0.457258,
}
# drop = PRIOR_SLOPE x sqrt(KL): the slope that maps Q4_K_M's KLD (0.032) to the 2 % that Kurtic et al. report
# for tuned 4-bit weight-only quantization at a similar KL; used for GGUF priors only
PRIOR_SLOPE = 0.02 / math.sqrt(0.032)

PRIORS: dict[str, Prior] = {
    "uncompressed": Prior(0.0, 0.0, 0.0, "the uncompressed model itself"),
    "fp8": Prior(0.0, -0.005, 0.01, f"{KURTIC}: W8A8-FP is lossless at every model scale (~99.7 % recovery)"),
    "w8a8-int8": Prior(0.015, 0.0, 0.03, f"{KURTIC}: well-tuned W8A8-INT loses 1-3 %"),
    "w8a16": Prior(0.005, -0.005, 0.02, f"{KURTIC}: 8-bit weights alone lose no more than W8A8 (assumption)"),
    "w4a16": Prior(
        0.02, 0.0, 0.04, f"{KURTIC}: W4A16-INT (GPTQ) is competitive with W8A8-INT, ~1-3 % (98.9 % recovery, 8B)"
    ),
    "w4a16-rtn": Prior(
        0.04, 0.0, 0.08, f"{KURTIC} for calibrated W4A16; round-to-nearest without calibration assumed 2x worse"
    ),
    "bnb-nf4": Prior(0.03, 0.0, 0.06, f"{KURTIC} W4A16 range, widened: NF4 is data-free (assumption)"),
    "student": Prior(
        0.5,
        0.0,
        1.0,
        "no published prior for a depth-pruned, distilled student: its drop depends on the training budget "
        "(measure one); the interval is the whole range",
    ),
}


def prior(scheme: Scheme, student: bool = False) -> Prior:
    if student and scheme.uncompressed:
        return PRIORS["student"]
    if scheme.uncompressed:
        return PRIORS["uncompressed"]
    if scheme.gguf_type:
        kld = GGUF_KLD.get(scheme.gguf_type)
        if kld is None:
            return Prior(0.05, 0.0, 0.3, f"GGUF {scheme.gguf_type}: not in {LLAMACPP_KLD}; a wide range")
        mid = PRIOR_SLOPE * math.sqrt(kld)
        return Prior(
            mid,
            0.0,
            2.5 * mid,
            f"{LLAMACPP_KLD}: KLD {kld:g}, mapped to a drop by {PRIOR_SLOPE:.3f} x sqrt(KLD) (anchored on "
            f"{KURTIC}'s ~2 % for 4-bit at Q4_K_M's KLD); 90 % range 0 to 2.5x",
        )
    if scheme.kind == "w4a16" and scheme.method == "rtn":
        return PRIORS["w4a16-rtn"]
    if scheme.kind.startswith("w4a16"):
        return PRIORS["w4a16"]
    return PRIORS.get(scheme.kind, Prior(0.05, 0.0, 0.3, "no published prior for this scheme: a wide range"))


# ------------------------------------------------------------------------------------------ KL -> drop


@dataclass(frozen=True)
class KLRelation:
    """drop = slope x sqrt(KL) + e, Var(e) = tau^2 + the measurement's variance (fitted on n cells)."""

    slope: float
    slope_se: float
    tau: float
    n: int

    def predict(self, kld: float, measurement_se: float = 0.0) -> Fitted:
        x = math.sqrt(max(kld, 0.0))
        sd = math.sqrt((x * self.slope_se) ** 2 + self.tau**2 + measurement_se**2)
        return Fitted(
            self.slope * x,
            sd,
            max(1, self.n - 1),
            self.n,
            f"KL {kld:.3g} -> drop by {self.slope:.3f} x sqrt(KL), fitted on {self.n} cell(s) of this host ({DUTTA})",
            "fitted",
        )


def _wls(xs: list[float], ys: list[float], var: list[float]) -> tuple[float, float]:
    """Weighted least squares through the origin: (slope, its standard error)."""
    sw = sum(x * x / v for x, v in zip(xs, var))
    b = sum(x * y / v for x, y, v in zip(xs, ys, var)) / sw
    return b, math.sqrt(1 / sw)


def fit_kl_relation(points: list[tuple[float, float, float]]) -> KLRelation | None:
    """Fit on [(KL, drop, drop's se)]; None with fewer than three points. tau^2 (the scatter of true drops
    around the line) by DerSimonian-Laird's moment estimator for a meta-regression through the origin, then
    the slope by weighted least squares with weights 1 / (se^2 + tau^2)."""
    pts = [(math.sqrt(max(k, 0.0)), d, max(se, 1e-4)) for k, d, se in points if k is not None and d is not None]
    if len(pts) < 3:
        return None
    xs, ys, ses = (list(t) for t in zip(*pts))
    w = [1 / (s * s) for s in ses]
    b_fe, _ = _wls(xs, ys, [s * s for s in ses])
    q = sum(wi * (y - b_fe * x) ** 2 for wi, x, y in zip(w, xs, ys))
    denom = sum(w) - sum(wi * wi * x * x for wi, x in zip(w, xs)) / sum(wi * x * x for wi, x in zip(w, xs))
    tau2 = max(0.0, (q - (len(pts) - 1)) / denom) if denom > 0 else 0.0
    b, se_b = _wls(xs, ys, [s * s + tau2 for s in ses])
    return KLRelation(b, se_b, math.sqrt(tau2), len(pts))


# ------------------------------------------------------------------------------------------ prediction


def _drop_obs(obs: Iterable[Observation]) -> list[Observation]:
    return [o for o in obs if o.drop is not None and not o.is_reference]


def predict_drop(case: Case, obs: list[Observation], measurement_se: float = 0.0) -> Fitted:
    """The drop of `case` against its parent, from `obs` (this host's measured cells, the case itself left
    out): see the module doc for the order. `measurement_se`: add a measurement's own noise (to judge the
    interval against a measured drop, as leave-one-out does)."""
    have = _drop_obs(o for o in obs if o.host_id == case.host_id)
    quant = [o for o in have if not (o.case.student and o.case.scheme.uncompressed)]
    if case.scheme.uncompressed and not case.student:
        return Fitted(0.0, 0.0, math.inf, 0, "the uncompressed model: its own reference", "prior")
    if case.kld is not None and not (case.student and case.scheme.uncompressed):
        rel = fit_kl_relation([(o.case.kld, o.drop, o.drop_se or 0.0) for o in have if o.case.kld is not None])  # type: ignore[misc]
        if rel is not None:
            return rel.predict(case.kld, measurement_se)
    if case.student and case.scheme.uncompressed:
        same = [o for o in have if o.case.student and o.case.scheme.uncompressed and o.case.model == case.model]
        same_depth = [o for o in same if o.case.keep_every == case.keep_every]
        return _from_group(same_depth or same, "students of this teacher", PRIORS["student"], measurement_se, have)
    fam = [o for o in quant if o.case.model == case.model and o.case.scheme.family == case.scheme.family]
    if fam:
        return _from_group(fam, f"{case.scheme.family} cells of {case.model}", None, measurement_se, have)
    cls = [o for o in quant if o.case.model == case.model and o.case.scheme.bits_class == case.scheme.bits_class]
    if cls:
        return _from_group(cls, f"{case.scheme.bits_class} cells of {case.model}", None, measurement_se, have)
    p = prior(case.scheme, case.student)
    sd = (p.hi - p.lo) / (2 * 1.645)
    return Fitted(p.mid, math.sqrt(sd**2 + measurement_se**2), math.inf, 0, f"prior: {p.source}", "prior")


def _group_spread(have: list[Observation]) -> tuple[float | None, int]:
    """Pooled within-family sd of the drop on this host (families of one model with >= 2 cells)."""
    groups: dict[tuple[str, str], list[float]] = defaultdict(list)
    for o in have:
        key = "student" if o.case.student and o.case.scheme.uncompressed else o.case.scheme.bits_class
        groups[(o.case.model, key)].append(o.drop)  # type: ignore[arg-type]
    return pooled_sd(groups.values())


def _from_group(
    group: list[Observation], what: str, fallback: object, measurement_se: float, have: list[Observation]
) -> Fitted:
    drops = [o.drop for o in group if o.drop is not None]
    n = len(drops)
    if n == 0:
        p = fallback if isinstance(fallback, Prior) else PRIORS["student"]
        sd = (p.hi - p.lo) / (2 * 1.645)
        return Fitted(p.mid, math.sqrt(sd**2 + measurement_se**2), math.inf, 0, f"prior: {p.source}", "prior")
    sd_w, df = _group_spread(have)
    if sd_w is None:  # no family on this host has two cells: the group's own spread, else a wide default
        sd_w, df = (statistics.stdev(drops), n - 1) if n >= 2 else (0.05, 0)
    # measured drops scatter with their own noise: the pooled spread holds it, so none is added here
    sd = sd_w * math.sqrt(1 + 1 / n)
    return Fitted(
        statistics.fmean(drops),
        sd,
        df if df else math.inf,
        n,
        f"mean drop of {n} measured {what} on this host",
        "fitted",
    )

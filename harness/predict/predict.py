"""Predictions for a cell not yet run: memory, speed (decode tok/s, TPOT, TTFT per concurrency) and quality
drop, each a 90 % prediction interval labelled *predicted*, with the error the predictor has had on this host's
measured cells (leave-one-out, harness/predict/accuracy.py) beside it. A measured cell of the same
configuration wins: its figures are reported, labelled *measured*.

memory = weights (module by module, harness/serving_memory.py) + the KV cache the engine holds + the engine's
         overhead fitted on this host's cells (harness/predict/fit.fit_overhead), else its documented default
speed  = roofline limit (harness/predict/roofline.py) x efficiency fitted per host x engine x kernel x
         concurrency (harness/predict/fit.fit_efficiency), else a stated default efficiency
quality= harness/predict/quality.predict_drop: a fidelity pass's KL, measured cells of the family, or a prior
Pure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.hw.figures import HostFigures
from harness.predict.fit import Fitted, efficiency_points, fit_efficiency, fit_overhead, floors, overhead_points
from harness.predict.observe import Case, Observation
from harness.predict.quality import predict_drop
from harness.predict.roofline import decode_limit, mean_context, prefill_limit
from harness.serving_memory import GiB, kv_cache_bytes, uniform_weights_bytes, weights
from harness.spec.base import BITS


class Estimate(BaseModel):
    """One figure: predicted (with its 90 % interval) or measured (lo = hi = value)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: float
    lo: float
    hi: float
    unit: str
    label: Literal["predicted", "measured"] = "predicted"
    source: str = "fitted"  # fitted | default | prior | measured
    cells: int = 0  # measured cells the fit rests on
    basis: str = ""
    error: str | None = None  # the predictor's leave-one-out error on this host, in words


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    decode_tok_s: float
    decode_regime: str
    prefill_tok_s: float
    prefill_regime: str
    ttft_floor_ms: float
    compute_dtype: str


class Prediction(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    scheme: str
    kind: str
    engine: str
    distill: str = "none"
    device: str
    host_id: str
    host_label: str
    context_len: int
    concurrency: float
    feasible: bool = True
    reason: str | None = None  # why the host cannot run it (harness/plan/support.py)
    weights_gib: float | None = None
    kv_gib: float | None = None
    memory_gib: Estimate | None = None
    decode_tok_s: Estimate | None = None  # output tok/s of the whole server at `concurrency`
    tpot_ms: Estimate | None = None
    ttft_ms: Estimate | None = None
    drop: Estimate | None = None  # relative to the model the scheme is applied to
    limits: Limits | None = None
    measured_cell: str | None = None  # a measured cell of this configuration: its figures won
    notes: list[str] = Field(default_factory=list)


@dataclass(frozen=True)
class HostView:
    """The host predicted for: its id and words, its device, its roofline figures, and why it cannot run a
    scheme (None: it can), where that is known."""

    host_id: str
    label: str
    device: str
    figures: HostFigures | None
    caps: object | None = None  # harness.hw.caps.HostCaps, for the support table

    def support_problem(self, scheme_kind: str, engine: str) -> str | None:
        if self.caps is None:
            return None
        from harness.plan.support import SUPPORT, support_problem

        kind = "gguf" if scheme_kind.startswith("gguf") else scheme_kind.replace("fp8", "fp8-dynamic")
        if (kind, engine) not in SUPPORT:
            return None
        return support_problem(kind, engine, self.device, self.caps)  # type: ignore[arg-type]


def _sig(x: float, digits: int = 4) -> float:
    return float(f"{x:.{digits}g}")


def _estimate(f: Fitted, transform, unit: str, error: str | None, digits: int = 4) -> Estimate:
    lo, hi = f.interval()
    a, b = sorted((transform(lo), transform(hi)))
    return Estimate(
        value=_sig(transform(f.value), digits),
        lo=_sig(a, digits),
        hi=_sig(b, digits),
        unit=unit,
        source=f.source,
        cells=f.n,
        basis=f.basis,
        error=error,
    )


def memory_estimate(case: Case, obs: list[Observation], error: str | None) -> tuple[float, float, Estimate]:
    """(weights GiB, KV GiB, memory need) of the case: host RAM on a CPU (the overhead fitted on this host's
    cells), device memory on a GPU (the documented default overhead: a GPU's measured peak holds vLLM's
    preallocated pool, so no overhead is derived from it)."""
    if case.arch is not None:
        w = weights(case.arch, case.scheme.quant).bytes / GiB
    else:
        w = uniform_weights_bytes(case.params or 0, BITS[case.scheme.precision]) / GiB
    kv = case.kv_gib
    here = overhead_points(o for o in obs if o.host_id == case.host_id)
    other = overhead_points(o for o in obs if o.host_id != case.host_id)
    over = fit_overhead(here, case.scheme.engine, case.device, other)
    est = _estimate(over, lambda x: w + kv + x, "GiB", error, 3)
    basis = f"weights {w:.3f} + KV {kv:.3f} + overhead {over.value:.3f} GiB ({over.basis})"
    # a process holds at least its weights and KV: the interval is cut there (it then covers no less)
    floor = _sig(w + kv, 3)
    upd = {"basis": basis, "lo": max(est.lo, floor), "value": max(est.value, floor), "hi": max(est.hi, floor)}
    return w, kv, est.model_copy(update=upd)


def speed_estimates(
    case: Case,
    figs: HostFigures,
    obs: list[Observation],
    level: float,
    errors: dict[str, str | None],
    other_figures: dict[str, HostFigures | None] | None = None,
) -> dict[str, Estimate]:
    """decode tok/s, TPOT and TTFT of `case` at concurrency `level`: the roofline's bound x a fitted efficiency
    (this host's cells; other hosts' where `other_figures` gives their figures and the engine never ran here)."""
    points = efficiency_points([o for o in obs if o.host_id == case.host_id], figs)
    others = efficiency_points([o for o in obs if o.host_id != case.host_id], other_figures or {})
    bound = floors(case, figs, level)
    out = {}
    for fig, unit in (("decode", "tok/s"), ("tpot", "ms"), ("ttft", "ms")):
        f = fit_efficiency(points, fig, case.scheme.engine, case.scheme.kernel, level, case.device, others)
        if fig == "decode":
            out[fig] = _estimate(f, lambda x, b=bound[fig]: b * math.exp(x), unit, errors.get(fig), 3)
        else:
            out[fig] = _estimate(f, lambda x, b=bound[fig]: b / math.exp(x), unit, errors.get(fig), 3)
    return out


def limits_of(case: Case, figs: HostFigures, level: float) -> Limits | None:
    from harness.predict.fit import case_cost

    cost = case_cost(case)
    if cost is None:
        return None
    dtype = case.scheme.compute_dtype(case.activation_dtype)
    dec = decode_limit(cost, figs, dtype, mean_context(case.input_tokens, case.output_tokens), level)
    pre = prefill_limit(cost, figs, dtype, max(1, case.input_tokens))
    return Limits(
        decode_tok_s=round(dec.tok_s, 3),
        decode_regime=dec.regime,
        prefill_tok_s=round(pre.tok_s, 3),
        prefill_regime=pre.regime,
        ttft_floor_ms=round(1000.0 * case.input_tokens / pre.tok_s, 3),
        compute_dtype=dtype,
    )


def same_config(o: Observation, case: Case) -> bool:
    a, b = o.case, case
    return (
        a.host_id == b.host_id
        and a.model == b.model
        and a.distill == b.distill
        and a.scheme.family == b.scheme.family
        and a.scheme.group_size == b.scheme.group_size
        and a.scheme.ignore == b.scheme.ignore
    )


def _measured(o: Observation, level: float) -> dict[str, Estimate]:
    """The measured cell's own figures at the concurrency closest to `level`."""
    out: dict[str, Estimate] = {}

    def m(v: float, unit: str) -> Estimate:
        return Estimate(value=v, lo=v, hi=v, unit=unit, label="measured", source="measured", cells=1,
                        basis=f"measured: cell {o.cell_id}")  # fmt: skip

    if o.levels:
        lv = min(o.levels, key=lambda x: (abs(math.log(x.concurrency / level)), x.concurrency))
        out["decode"] = m(lv.output_tok_s, "tok/s")
        if lv.tpot_ms_p50:
            out["tpot"] = m(lv.tpot_ms_p50, "ms")
        if lv.ttft_ms_p50:  # at the same level as the prediction it stands for
            out["ttft"] = m(lv.ttft_ms_p50, "ms")
    if o.peak_gib is not None:
        out["memory"] = m(o.peak_gib, "GiB")
    if o.drop is not None:
        out["drop"] = m(o.drop, "fraction")
    return out


def predict(
    case: Case,
    host: HostView,
    obs: list[Observation],
    context_len: int,
    concurrency: float,
    errors: dict[str, str | None] | None = None,
) -> Prediction:
    """The prediction for `case` at `concurrency` on `host`, from `obs` (measured cells; only those of the
    host are used). `errors`: figure -> the leave-one-out error in words (harness/predict/accuracy.py)."""
    errors = errors or {}
    problem = host.support_problem(case.scheme.kind, case.scheme.engine)
    p = Prediction(
        model=case.model,
        scheme=case.scheme.name,
        kind=case.scheme.kind,
        engine=case.scheme.engine,
        distill=case.distill,
        device=host.device,
        host_id=host.host_id,
        host_label=host.label,
        context_len=context_len,
        concurrency=concurrency,
        feasible=problem is None,
        reason=problem,
    )
    notes = []
    w, kv, mem = memory_estimate(case, obs, errors.get("memory"))
    upd: dict = {"weights_gib": round(w, 4), "kv_gib": round(kv, 4), "memory_gib": mem}
    if case.arch is None:
        notes.append("size only: weights = params x bits / 8, no KV cache and no roofline (give a config.json)")
    elif host.figures is None:
        notes.append("no roofline figures for this host: run `harness doctor` (or pick a preset or a GPU name)")
    else:
        upd["limits"] = limits_of(case, host.figures, concurrency)
        sp = speed_estimates(case, host.figures, obs, concurrency, errors)
        upd |= {"decode_tok_s": sp["decode"], "tpot_ms": sp["tpot"], "ttft_ms": sp["ttft"]}
    d = predict_drop(case, obs)
    if case.student and not case.scheme.uncompressed:
        # a quantized student: the student's own drop against its teacher, plus the scheme's on the student
        from harness.predict.schemes import Scheme

        base = predict_drop(replace(case, scheme=Scheme(name="bf16", precision="bf16"), kld=None), obs)
        sd = math.sqrt(base.sd_pred**2 + d.sd_pred**2)
        d = Fitted(base.value + d.value, sd, min(base.df, d.df), base.n + d.n,
                   f"student: {base.basis}; plus {case.scheme.name}: {d.basis}", base.source)  # fmt: skip
    upd["drop"] = _estimate(d, lambda x: x, "fraction", errors.get("drop"), 4)
    match = next((o for o in obs if same_config(o, case)), None)
    if match is not None:
        meas = _measured(match, concurrency)
        upd |= {k2: meas[k1] for k1, k2 in (("memory", "memory_gib"), ("decode", "decode_tok_s"),
                ("tpot", "tpot_ms"), ("ttft", "ttft_ms"), ("drop", "drop")) if k1 in meas}  # fmt: skip
        upd["measured_cell"] = match.cell_id
        notes.append(f"measured as cell {match.cell_id} on this host: measured figures shown where it has them")
    upd["notes"] = notes
    return p.model_copy(update=upd)


def user_case(
    target_name: str,
    arch,
    params: int,
    scheme,
    host: HostView,
    context_len: int,
    concurrency: float,
    input_tokens: int,
    output_tokens: int,
    activation_dtype: str | None,
    distill: str = "none",
    keep_every: int | None = None,
) -> Case:
    """The Case of a deployment a user describes: the KV cache holds context_len x concurrency tokens."""
    from harness.predict.cost import kv_bytes

    kv = 0.0
    if arch is not None:
        if keep_every:
            arch = arch.pruned(keep_every)
        per_token = kv_bytes(arch, scheme.kv_dtype(activation_dtype))
        kv = kv_cache_bytes(per_token, context_len * concurrency) / GiB
    return Case(
        model=target_name,
        arch=arch,
        scheme=scheme,
        device=host.device,
        host_id=host.host_id,
        activation_dtype=activation_dtype,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        concurrencies=(float(concurrency),),
        kv_gib=kv,
        distill=distill,
        keep_every=keep_every,
        params=params,
    )

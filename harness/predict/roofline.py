"""The roofline of a served model on a host: the fastest decode and prefill its bytes and FLOPs allow there,
which of the two binds (the regime), and each measured figure as a % of its limit.

decode at concurrency c (c sequences step together, each holding the load's mean context L = input +
output / 2 tokens):
    memory-bound limit   c x bandwidth / (weights streamed per step + c x KV bytes/token x L)
    compute-bound limit  peak FLOP/s of the matmul dtype / FLOPs per token at context L
prefill of n prompt tokens (one prompt):
    memory-bound limit   n x bandwidth / (weights streamed + n x KV bytes/token)
    compute-bound limit  peak / FLOPs per token at the mean causal context n / 2
The limit is the lower of the two; the regime names it. The measured decode figure of a level is its output
tok/s (prefill time included, as the load test reports it), the measured prefill is input tokens / TTFT p50 of
the synchronous level: both lower than pure decode or prefill, so a % of limit is an upper bound of the
engine's efficiency, never above 100 % unless the host figures were measured while the host was busy.

`roofline_of(result, figures)` fills a result's `roofline` block (harness/result.Roofline) when its cell
finishes; `limits(...)` is the same arithmetic for a cell not yet run (harness/predict/predict.py). Pure.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from harness.hw.figures import HostFigures
from harness.models.arch import ArchInfo
from harness.predict.cost import ModelCost, model_cost
from harness.predict.schemes import scheme_of_plan
from harness.result import CellResult, Roofline, RooflineLevel

CLOSED_LOOP = ("synchronous", "concurrency")  # levels whose `level` is a concurrency (not a request rate)


@dataclass(frozen=True)
class Limit:
    bandwidth_tok_s: float
    compute_tok_s: float
    intensity: float  # FLOPs per byte of the step

    @property
    def tok_s(self) -> float:
        return min(self.bandwidth_tok_s, self.compute_tok_s)

    @property
    def regime(self) -> str:
        return "memory-bound" if self.bandwidth_tok_s <= self.compute_tok_s else "compute-bound"


def decode_limit(cost: ModelCost, figs: HostFigures, dtype: str, context: float, concurrency: float) -> Limit:
    bw = figs.bandwidth_gb_s * 1e9
    peak, _ = figs.peak_flops(dtype)
    step_bytes = cost.streamed_bytes + concurrency * cost.kv_bytes_per_token * context
    flops = cost.flops_per_token(context)
    return Limit(concurrency * bw / step_bytes, peak / flops, concurrency * flops / step_bytes)


def prefill_limit(cost: ModelCost, figs: HostFigures, dtype: str, tokens: int) -> Limit:
    bw = figs.bandwidth_gb_s * 1e9
    peak, _ = figs.peak_flops(dtype)
    step_bytes = cost.streamed_bytes + tokens * cost.kv_bytes_per_token
    flops = cost.flops_per_token(tokens / 2)
    return Limit(tokens * bw / step_bytes, peak / flops, tokens * flops / step_bytes)


def mean_context(input_tokens: int, output_tokens: int) -> float:
    return input_tokens + output_tokens / 2


def _pct(measured: float | None, limit: float) -> float | None:
    return None if measured is None or limit <= 0 else round(100.0 * measured / limit, 2)


def roofline(
    cost: ModelCost,
    figs: HostFigures,
    dtype: str,
    input_tokens: int,
    output_tokens: int,
    levels: list[tuple[str, float, float | None]],
    ttft_ms_sync: float | None = None,
) -> Roofline:
    """The block for `levels` [(profile, concurrency, measured output tok/s or None)] and the synchronous
    TTFT p50 (the prefill measured), on `figs`."""
    ctx = mean_context(input_tokens, output_tokens)
    out = []
    for profile, c, measured in levels:
        lim = decode_limit(cost, figs, dtype, ctx, c)
        out.append(
            RooflineLevel(
                profile=profile,
                level=c,
                bandwidth_tok_s=round(lim.bandwidth_tok_s, 3),
                compute_tok_s=round(lim.compute_tok_s, 3),
                limit_tok_s=round(lim.tok_s, 3),
                regime=lim.regime,  # type: ignore[arg-type]
                intensity=round(lim.intensity, 3),
                measured_tok_s=measured,
                pct_of_limit=_pct(measured, lim.tok_s),
            )
        )
    pre = prefill_limit(cost, figs, dtype, input_tokens)
    measured_pre = input_tokens * 1000.0 / ttft_ms_sync if ttft_ms_sync else None
    peak, used = figs.peak_flops(dtype)
    return Roofline(
        bandwidth_gb_s=figs.bandwidth_gb_s,
        peak_tflops=peak / 1e12,
        compute_dtype=dtype if used == dtype else f"{dtype} (as {used}: no {dtype} figure)",
        figures_source=f"{figs.source}: {figs.basis}"[:400],
        weight_bytes=round(cost.weight_bytes),
        streamed_bytes=round(cost.streamed_bytes),
        kv_bytes_per_token=cost.kv_bytes_per_token,
        flops_per_token=round(cost.flops_per_token(ctx)),
        context_tokens=ctx,
        levels=out,
        prefill_tokens=input_tokens,
        prefill_bandwidth_tok_s=round(pre.bandwidth_tok_s, 3),
        prefill_compute_tok_s=round(pre.compute_tok_s, 3),
        prefill_limit_tok_s=round(pre.tok_s, 3),
        prefill_regime=pre.regime,  # type: ignore[arg-type]
        prefill_measured_tok_s=round(measured_pre, 3) if measured_pre else None,
        prefill_pct_of_limit=_pct(measured_pre, pre.tok_s),
        ttft_floor_ms=round(1000.0 * input_tokens / pre.tok_s, 3),
    )


def arch_of_plan(plan: dict) -> ArchInfo | None:
    a = plan.get("arch")
    if not a:
        return None
    names = {f.name for f in fields(ArchInfo)}
    return ArchInfo(**{k: v for k, v in a.items() if k in names})


def cost_of_result(result: CellResult) -> ModelCost | None:
    """The served model's cost: the plan's architecture, its scheme's module-wise widths, its engine's KV
    dtype; the weight bytes are the artefact's where it is stored compressed (its bytes on disk are what is
    served), the module-wise estimate for an uncompressed model (served in its precision, whatever its file)."""
    plan = result.plan
    arch = arch_of_plan(plan)
    if arch is None:
        return None
    scheme = scheme_of_plan(plan)
    cost = model_cost(arch, scheme.quant, _kv_bytes(arch, plan))
    size = result.artefact.size_bytes if result.artefact else None
    if size and not scheme.uncompressed:
        cost = cost.scaled_to(float(size))
    return cost


def _kv_bytes(arch: ArchInfo, plan: dict) -> float:
    from pydantic import TypeAdapter

    from harness.plan.memory_estimate import kv_bytes_for
    from harness.spec.serving import Serving

    serving = TypeAdapter(Serving).validate_python(plan["serving"])
    return kv_bytes_for(arch, serving, plan["precision"], plan.get("compute_dtype"), plan.get("kv_cache", "auto"))


def measured_levels(result: CellResult) -> tuple[list[tuple[str, float, float | None]], float | None]:
    """([(profile, concurrency, output tok/s)] of the closed-loop levels, TTFT p50 of the synchronous level
    (else of concurrency 1))."""
    levels = [lv for lv in (result.perf.levels if result.perf else []) if lv.profile in CLOSED_LOOP]
    rows: list[tuple[str, float, float | None]] = [(lv.profile, float(lv.level), lv.output_tok_s) for lv in levels]
    sync = next((lv for lv in levels if lv.profile == "synchronous"), None) or next(
        (lv for lv in levels if lv.level == 1), None
    )
    return rows, sync.ttft_ms.p50 if sync else None


def roofline_of(result: CellResult, figs: HostFigures | None) -> Roofline:
    """The result's roofline block on `figs` (its host's figures); with `error` when it cannot be drawn."""
    if figs is None:
        return Roofline(error="no host figures: `harness doctor` measures them (bandwidth, matmul throughput)")
    cost = cost_of_result(result)
    if cost is None:
        return Roofline(error="no architecture facts in the cell's plan (config.json unreadable at plan time)")
    plan = result.plan
    load = plan.get("load") or {}
    scheme = scheme_of_plan(plan)
    dtype = scheme.compute_dtype(plan.get("compute_dtype"))
    levels, ttft = measured_levels(result)
    try:
        return roofline(
            cost, figs, dtype, int(load.get("input_tokens", 0)), int(load.get("output_tokens", 0)), levels, ttft
        )
    except (ValueError, ZeroDivisionError) as exc:
        return Roofline(error=f"roofline not computable: {exc}")


def with_roofline(result: CellResult, settings) -> CellResult:
    """`result` with its roofline block on this host's figures (harness/hw/probe.host_figures: measured once
    per host when none are cached, after the cell's server has stopped). The one impure entry of this module,
    called where a cell's result is assembled (harness/cell/run.py). Never fails the cell: a problem becomes
    the block's `error`."""
    try:
        from harness.hw.probe import host_figures

        block = roofline_of(result, host_figures(settings, measure=True))
    except Exception as exc:  # noqa: BLE001 - the roofline is a view of the cell, never a reason to lose it
        block = Roofline(error=f"roofline not computed: {type(exc).__name__}: {exc}"[:500])
    return result.model_copy(update={"roofline": block})

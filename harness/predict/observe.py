"""What a measured cell tells the predictions: an Observation (its configuration as a Case, and its measured
memory, speed per load level, quality drop and KL against its parent), built from stored results.

A Case is what a prediction is asked for: a model (architecture), a scheme, a host, a load shape and the KV
the engine holds. `case_of(obs)` is the measured cell's own Case, so leave-one-out asks the predictor exactly
what the cell ran (harness/predict/accuracy.py).

Quality is the paired drop of the avg_acc aggregate against the cell's parent (the uncompressed model or
student it was made from), relative to the parent's score, with the standard error read from its paired
bootstrap CI (harness/evaluate/reference.py): what a scheme does to the model it is applied to. A student's
own drop is against its teacher. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from harness.models.arch import ArchInfo
from harness.predict.roofline import CLOSED_LOOP, arch_of_plan
from harness.predict.schemes import Scheme, scheme_of_plan
from harness.result import CellResult
from harness.result_facts import primary_scores
from harness.serving_memory import GiB, weights

Z95 = 1.959964


@dataclass(frozen=True)
class Case:
    model: str  # the model's name: cells of one model (and its students) are one family
    arch: ArchInfo | None
    scheme: Scheme
    device: str
    host_id: str
    activation_dtype: str | None  # what weight-only schemes compute in (the lineage's reference dtype)
    input_tokens: int
    output_tokens: int
    concurrencies: tuple[float, ...]
    kv_gib: float  # the KV cache the engine holds (a vLLM-CPU reserve, llama.cpp's slots, or context x conc.)
    distill: str = "none"
    keep_every: int | None = None  # a depth-pruned student keeps every n-th layer
    kld: float | None = None  # a fidelity pass's KL against the parent, when one was measured
    params: int | None = None  # a model known only by its size

    @property
    def student(self) -> bool:
        return self.distill != "none"


@dataclass(frozen=True)
class LevelObs:
    profile: str
    concurrency: float
    output_tok_s: float
    tpot_ms_p50: float | None
    ttft_ms_p50: float | None


@dataclass(frozen=True)
class Observation:
    cell_id: str
    label: str
    case: Case
    engine: str
    peak_gib: float | None
    levels: tuple[LevelObs, ...] = field(default_factory=tuple)
    drop: float | None = None  # relative drop vs the parent (0.03 = 3 %)
    drop_se: float | None = None
    parent_id: str | None = None
    weights_gib: float | None = None  # the module-wise estimate of what is served (the predictor's own)

    @property
    def is_reference(self) -> bool:
        return self.parent_id is None

    @property
    def host_id(self) -> str:
        return self.case.host_id


def case_of_plan(plan: dict, host_id: str, kld: float | None = None) -> Case:
    """The Case of a planned cell (a CellPlan's JSON dump)."""
    arch = arch_of_plan(plan)
    scheme = scheme_of_plan(plan)
    load = plan.get("load") or {}
    concs = sorted(
        {1.0}
        | {float(x) for p in load.get("profiles", []) if p.get("kind") in CLOSED_LOOP for x in (p.get("levels") or [1])}
    )
    student = plan.get("student") or {}
    est = plan.get("estimate") or {}
    return Case(
        model=str((plan.get("model") or {}).get("name", "?")),
        arch=arch,
        scheme=scheme,
        device=str(plan.get("device", "cpu")),
        host_id=host_id,
        activation_dtype=plan.get("compute_dtype"),
        input_tokens=int(load.get("input_tokens", 0)),
        output_tokens=int(load.get("output_tokens", 0)),
        concurrencies=tuple(concs),
        kv_gib=float(est.get("kv_cache_gib") or 0.0),
        distill=str(plan.get("distill", "none")),
        keep_every=(student.get("student") or {}).get("keep_every"),
        kld=kld,
    )


def _avg_primary(result: CellResult, tasks: Iterable[str]) -> float | None:
    s = primary_scores(result)
    vals = [s[t] for t in tasks if t in s]
    return sum(vals) / len(vals) if vals else None


def observations(results: Iterable[CellResult]) -> list[Observation]:
    """An Observation per done result (parents looked up among `results`, on the same host)."""
    # a spec-decoded cell (issue #28) decodes several tokens per target step: no model of a scheme's speed
    # describes it, so it teaches the predictors nothing about its target's configuration
    done = [r for r in results if r.done and not (r.plan or {}).get("draft")]
    by_key = {(r.cell_id, r.host_id): r for r in done}
    out = []
    for r in done:
        plan = r.plan
        shift = r.shift or {}
        kld = (shift.get("metrics") or {}).get("kld_mean") if plan.get("parent_id") else None
        case = case_of_plan(plan, r.host_id, kld)
        drop = se = None
        parent = by_key.get((str(plan["parent_id"]), r.host_id)) if plan.get("parent_id") else None
        agg = (shift.get("flips") or {}).get("aggregate") or {}
        if parent is not None and agg.get("drop_abs") is not None:
            ref = _avg_primary(parent, agg.get("tasks") or [])
            ci = agg.get("drop_ci95") or [None, None]
            if ref:
                drop = agg["drop_abs"] / ref
                if ci[0] is not None and ci[1] is not None:
                    se = (ci[1] - ci[0]) / (2 * Z95) / ref
        levels = tuple(
            LevelObs(lv.profile, float(lv.level), lv.output_tok_s, lv.tpot_ms.p50, lv.ttft_ms.p50)
            for lv in (r.perf.levels if r.perf else [])
            if lv.profile in CLOSED_LOOP and lv.completed and lv.output_tok_s > 0
        )
        w = weights(case.arch, case.scheme.quant).bytes / GiB if case.arch else None
        out.append(
            Observation(
                cell_id=r.cell_id,
                label=r.label,
                case=case,
                engine=case.scheme.engine,
                peak_gib=r.memory.peak_gib if r.memory else None,
                levels=levels,
                drop=drop,
                drop_se=se,
                parent_id=plan.get("parent_id"),
                weights_gib=w,
            )
        )
    return out

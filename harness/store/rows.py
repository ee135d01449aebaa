"""The index's rows, built from a CellResult (and, for a cell without a result, its plan): every figure
comes from harness/result_facts, every per-item score from the result's own items, so the index holds
nothing the JSON results do not (`harness db rebuild` needs only them).
"""

from __future__ import annotations

import json
from typing import Any

from harness.result import CellResult, RooflineLevel
from harness.result_facts import FIGURES, cell_status, figures, level_window, user_tok_s
from harness.store.schema import DECISION_COLS, LATENCIES, PERCENTILES, ROOFLINE_FIGURES, SPEC_FIGURES

Row = dict[str, Any]


def cell_row(plan: dict[str, Any], result: CellResult | None, host: dict[str, Any]) -> Row:
    """One `cells` row from a planned cell (a CellPlan's JSON dump), the host it is for and its result,
    if any."""
    est = plan.get("estimate") or {}
    status = cell_status(plan.get("status", "planned"), plan.get("reason"), result)
    row: Row = {
        "cell_id": plan["cell_id"],
        "host_id": host["host_id"],
        "host_label": host.get("label"),
        "matrix": plan["matrix"],
        "model": plan["model"]["name"],
        "precision": plan["precision"],
        "method": plan["method"],
        "method_kind": (plan.get("method_spec") or {}).get("kind", "none"),
        "distill": plan["distill"],
        "kv_cache": plan.get("kv_cache", "auto"),  # axes.kv_cache; stored plans without it used the default
        "engine": plan["serving"]["kind"],
        "device": plan["device"],
        "status": status.status,
        "reason": status.reason,
        "parent_id": plan.get("parent_id"),
        "est_mem_gib": est.get("total_gib"),
        "est_weights_gib": est.get("weights_gib"),
        "est_kv_gib": est.get("kv_cache_gib"),
        "params": est.get("params"),
        "kv_bytes_per_token": _kv_bytes(plan),
        **dict.fromkeys(FIGURES),
        **dict.fromkeys(ROOFLINE_FIGURES),
        **speculative_figures(plan, result),
    }
    if result is not None:
        row.update(roofline_figures(result))
        quality = result.quality
        row.update(
            figures(result),
            lm_eval_version=quality.lm_eval_version if quality else None,
            git_sha=result.environment.get("git_sha"),
            schema_version=result.schema_version,
            artefact_model=result.artefact.model if result.artefact else None,
            finished_at=result.finished_at,
            wall_s=result.wall_s,
            scored_by=quality.scored_by if quality else None,
            result_json=json.dumps(result.model_dump(mode="json")),
        )
    row["teacher_id"] = plan.get("teacher_id")  # known from the plan, before the cell has run
    row.update(decision_row(result))
    return row


def decision_row(result: CellResult | None) -> Row:
    """The `decision_*` columns (harness/store/schema.DECISION_COLS) of a result's sequential decision."""
    d = result.quality.decision if result is not None and result.quality is not None else None
    if d is None:
        return dict.fromkeys(DECISION_COLS)
    return {
        "decision_measure": d.measure,
        "decision_relative": d.relative,
        "decision_limit": d.limit,
        "decision_error_rate": d.error_rate,
        "decision_reference": d.reference,
        "decision_verdict": d.verdict,
        "decision_stop": d.stop,
        "decision_stop_reason": d.stop_reason,
        "decision_items": d.items_used,
        "decision_point": d.point,
        "decision_lo": d.lo,
        "decision_hi": d.hi,
        "decision_more_items": d.more_items,
        "decision_scored": d.scored,
    }


def _kv_bytes(plan: dict[str, Any]) -> float | None:
    """KV-cache bytes per token of a planned cell, in the dtypes its engine keeps the cache in (the plan's
    one memory model, harness/plan/memory.kv_bytes_for); None without architecture facts."""
    arch = plan.get("arch")
    if not arch:
        return None
    from dataclasses import fields

    from pydantic import TypeAdapter

    from harness.models.arch import ArchInfo
    from harness.plan.memory_estimate import kv_bytes_for
    from harness.spec.serving import Serving

    names = {f.name for f in fields(ArchInfo)}
    info = ArchInfo(**{k: v for k, v in arch.items() if k in names})
    serving = TypeAdapter(Serving).validate_python(plan["serving"])
    return kv_bytes_for(info, serving, plan["precision"], plan.get("compute_dtype"), plan.get("kv_cache", "auto"))


def speculative_figures(plan: dict[str, Any], result: CellResult | None) -> Row:
    """A cell's SPEC_FIGURES: its draft and target from the plan; prediction, acceptance, speed-up, equal output
    and the energy counter from the result (None where it has none)."""
    out: Row = dict.fromkeys(SPEC_FIGURES)
    draft = plan.get("draft") or {}
    out.update(
        draft=draft.get("name"),
        draft_target_id=draft.get("target_id"),
        spec_tokens=draft.get("tokens"),
        price_per_hour=plan.get("price_per_hour"),
    )
    if result is None:
        return out
    meter = result.perf.energy if result.perf else None
    if meter is not None:
        out.update(energy_counter=meter.counter, energy_note=meter.note)
    sp = result.speculative
    if sp is not None:
        pred = sp.predicted
        out.update(
            draft_model=sp.draft_model,
            spec_alpha=pred.alpha if pred else None,
            spec_predicted_len=pred.mean_accepted_len if pred else None,
            spec_acceptance=sp.acceptance_rate,
            spec_accepted_len=sp.mean_accepted_len,
            spec_speedup_c1=sp.speedup_c1,
            spec_speedup_top=sp.speedup_top,
            spec_equal_output=sp.equal_output.verdict if sp.equal_output else None,
        )
    return out


def roofline_figures(result: CellResult) -> Row:
    """The roofline block's flat figures (ROOFLINE_FIGURES; None where the result has no roofline): the
    limits and % of limit at concurrency 1 and at the highest concurrency measured, and the prefill's."""
    rf = result.roofline
    out: Row = dict.fromkeys(ROOFLINE_FIGURES)
    if rf is None or rf.error:
        return out
    c1 = next((lv for lv in rf.levels if lv.level == 1), None)
    top = max(rf.levels, key=lambda lv: lv.level) if rf.levels else None
    out.update(
        roofline_bandwidth_gb_s=rf.bandwidth_gb_s,
        roofline_peak_tflops=rf.peak_tflops,
        roofline_compute_dtype=rf.compute_dtype,
        roofline_tok_s_prefill=rf.prefill_limit_tok_s,
        roofline_pct_prefill=rf.prefill_pct_of_limit,
        regime_prefill=rf.prefill_regime,
    )
    for tag, lv in (("c1", c1), ("top", top)):
        if lv is not None:
            out |= {
                f"roofline_tok_s_{tag}": lv.limit_tok_s,
                f"roofline_pct_{tag}": lv.pct_of_limit,
                f"regime_{tag}": lv.regime,
            }
    return out


def perf_rows(result: CellResult) -> list[Row]:
    """One row per load level: its whole-level figures, its steady window's, which of the two stands for it
    (`window_kind`), the per-user tokens/s of that window and the SLO its goodput was judged against."""
    slo = ((result.plan.get("load") or {}).get("slo") or {}) if isinstance(result.plan, dict) else {}
    rows = []
    for lv in result.perf.levels if result.perf else []:
        r: Row = {
            "cell_id": result.cell_id,
            "host_id": result.host_id,
            "profile": lv.profile,
            "level": lv.level,
            "requests": lv.requests,
            "completed": lv.completed,
            "failed": lv.failed,
            "duration_s": lv.duration_s,
            "req_s": lv.req_s,
            "output_tok_s": lv.output_tok_s,
            "input_tok_s": lv.input_tok_s,
        }
        for m in LATENCIES:
            pct = getattr(lv, f"{m}_ms")
            for s in PERCENTILES:
                r[f"{m}_ms_{s}"] = getattr(pct, s)
        st, rep = lv.steady, lv.repeats
        steady, _ = level_window(lv)
        tok = rep.output_tok_s if rep else None
        r |= {
            "goodput_req_s": lv.goodput_req_s,
            "slo_attainment": lv.slo_attainment,
            "slo_met": lv.slo_met,
            "steady_req_s": st.req_s if st else None,
            "steady_output_tok_s": st.output_tok_s if st else None,
            "steady_goodput_req_s": st.goodput_req_s if st else None,
            **{f"steady_{m}_ms_p50": getattr(st, f"{m}_ms").p50 if st else None for m in ("ttft", "tpot", "e2e")},
            **{f"steady_{m}_ms_p99": getattr(st, f"{m}_ms").p99 if st else None for m in ("ttft", "tpot", "e2e")},
            "steady_requests": st.requests if st else None,
            "window_kind": "steady" if steady else "level",
            "user_tok_s": user_tok_s(st.tpot_ms.p50 if steady and st else lv.tpot_ms.p50),
            "slo_ttft_ms": slo.get("ttft_ms"),
            "slo_tpot_ms": slo.get("tpot_ms"),
            "slo_e2e_ms": slo.get("e2e_ms"),
            "slo_percentile": slo.get("percentile") if slo else None,
            "repeats": rep.n if rep else 1,
            "output_tok_s_ci95_low": tok.ci95[0] if tok and tok.ci95 else None,
            "output_tok_s_ci95_high": tok.ci95[1] if tok and tok.ci95 else None,
            "output_tok_s_cv": tok.cv if tok else None,
            "e2e_ms_p50_cv": rep.e2e_ms_p50.cv if rep and rep.e2e_ms_p50 else None,
            "noisy": lv.noisy,
        }
        roof = _roof_level(result, lv.profile, lv.level)
        r |= {
            "roofline_tok_s": roof.limit_tok_s if roof else None,
            "roofline_pct": roof.pct_of_limit if roof else None,
            "regime": roof.regime if roof else None,
        }
        en, sp = lv.energy, lv.speculative  # issue #28: the host's energy counter, a draft's counters
        r |= {
            "energy_j": en.joules if en else None,
            "j_per_token": en.joules_per_token if en else None,
            "tok_per_j": en.tokens_per_joule if en else None,
            "j_per_request": en.joules_per_request if en else None,
            "watts": en.watts if en else None,
            "spec_acceptance": sp.acceptance_rate if sp else None,
            "spec_accepted_len": sp.mean_accepted_len if sp else None,
            "spec_target_tok_s": sp.target_output_tok_s if sp else None,
            "spec_speedup": sp.speedup if sp else None,
        }
        rows.append(r)
    return rows


def _roof_level(result: CellResult, profile: str, level: float) -> RooflineLevel | None:
    rf = result.roofline
    if rf is None:
        return None
    return next((x for x in rf.levels if x.profile == profile and x.level == level), None)


def quality_rows(result: CellResult) -> list[Row]:
    q = result.quality
    if q is None:
        return []
    return [
        {
            "cell_id": result.cell_id,
            "host_id": result.host_id,
            "task": task,
            "metric": metric,
            "value": mv.value,
            "stderr": mv.stderr,
            "n": t.n,
            "n_total": t.n_total,
            "limit_items": t.limit,
            "num_fewshot": t.num_fewshot,
            "task_hash": t.task_hash,
            "lm_eval_version": q.lm_eval_version,
            "data_source": t.data_source,
        }
        for task, t in q.tasks.items()
        for metric, mv in t.metrics.items()
    ]


FLIP_FIGURES = ("n", "ref_correct_cell_wrong", "ref_wrong_cell_correct", "flip_rate", "drop_abs", "drop_rel", "ci")


def flip_rows(result: CellResult) -> list[Row]:
    """The flips against the reference, as the shift step stored them in the result."""
    shift = result.shift or {}
    rows = []
    for task, per_metric in ((shift.get("flips") or {}).get("tasks") or {}).items():
        for metric, f in per_metric.items():
            lo, hi = f.get("drop_ci95") or [None, None]
            rows.append(
                {
                    "cell_id": result.cell_id,
                    "host_id": result.host_id,
                    "ref_id": shift.get("reference"),
                    "task": task,
                    "metric": metric,
                    **{k: f.get(k) for k in FLIP_FIGURES},
                    "drop_ci_lo": lo,
                    "drop_ci_hi": hi,
                }
            )
    return rows


def item_rows(result: CellResult) -> list[Row]:
    """One row per scored item and metric, from the result's own items (never from work/)."""
    if result.quality is None:
        return []
    return [
        {
            "cell_id": result.cell_id,
            "host_id": result.host_id,
            "task": task,
            "doc_id": item.doc_id,
            "metric": metric,
            "value": value,
            "subtask": item.task,
        }
        for task, t in result.quality.tasks.items()
        for item in t.items
        for metric, value in item.scores.items()
    ]

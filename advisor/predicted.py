"""The main advisor's predicted cells: configurations not measured on the host, predicted (harness/predict),
checked against the same constraints, ranked together with the measured winners, each row marked measured or
predicted, and the unmeasured cell that would most change the answer if it were measured.

Candidates: each model measured on the host x the device's usual schemes (harness/predict/context.py
default_schemes) and the cells the index has planned but not finished, minus what was measured. A predicted
cell fits a constraint on its point figure for memory, tok/s and TTFT, and on its whole 90 % interval for the
drop (like --decide conservative: an interval that straddles the limit is undecided); latency SLOs are not
predicted, so with an --slo-* bound no predicted cell fits.

Which unmeasured cell to measure next: the one with the highest chance of beating the measured winner on the
objective while fitting the drop limit, P = P(objective beats it) x P(drop within), each from the prediction's
interval read as a normal (log-normal for speed). Without a measured winner, the one most likely to fit.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from advisor.constraints import Constraints
from advisor.select import Recommendation

Z90 = 1.645


def _phi(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def candidates(rec: Recommendation, db: Path, host: str, settings) -> tuple[list, list[str]]:
    """Predictions for the unmeasured configurations of the models measured on `host`."""
    from harness.predict.context import default_schemes, host_view, make_context, results_from_db
    from harness.predict.predict import predict, user_case
    from harness.predict.schemes import parse_scheme, scheme_of_plan
    from harness.predict.target import Target

    c = rec.constraints
    notes: list[str] = []
    results = results_from_db(db)
    mine = [r for r in results if r.host_id == host]
    if not mine:
        return [], ["no results of this host in the index: nothing to predict from"]
    hv = host_view(host, settings, {r.host_id: str((r.host or {}).get("label")) for r in results})
    if hv.figures is None:
        return [], [f"host {host} has no roofline figures (run `harness doctor` on it): no predicted cells"]
    ctx = make_context(hv, mine)
    shape = ctx.load_shape()
    done = {(o.case.model, o.case.distill, o.case.scheme.family, o.case.scheme.group_size) for o in ctx.obs}
    refs = {o.case.model: o for o in ctx.obs if o.is_reference}
    out = []
    for model, ref in refs.items():
        if c.model and model != c.model:
            continue
        act = ref.case.activation_dtype or ref.case.scheme.precision
        names = default_schemes(hv.device, ref.case.scheme.precision if ref.case.scheme.uncompressed else act)
        schemes = {s.family: s for s in (parse_scheme(n) for n in names)}
        # planned cells of this model that have no result on this host
        for r in results:
            plan = r.plan
            if (plan.get("model") or {}).get("name") == model and plan.get("distill", "none") == "none":
                s = scheme_of_plan(plan)
                schemes.setdefault(s.family, s)
        from harness.predict.context import fit_group_size

        target = Target(model, ref.case.arch, ref.case.arch.params if ref.case.arch else 0, "measured reference")
        for s in schemes.values():
            s, note = fit_group_size(s, target)
            if note:
                notes.append(note)
            if (model, "none", s.family, s.group_size) in done:
                continue
            case = user_case(model, ref.case.arch, target.params, s, hv, c.context_len, c.concurrency,
                             shape[0], shape[1], act)  # fmt: skip
            p = predict(case, hv, ctx.obs, c.context_len, c.concurrency, ctx.errors(s.engine))
            if p.feasible:
                out.append(p)
    return out, notes


def _drop_fits(p, c: Constraints, q_ref: float | None) -> tuple[str, float, float]:
    """(verdict, lo, hi) of a predicted drop against --max-drop, in the limit's units."""
    d = p.drop
    if c.max_drop is None or d is None:
        return "no limit", math.nan, math.nan
    lo, hi = d.lo, d.hi
    if not c.max_drop.relative:
        if q_ref is None:
            return "unknown", math.nan, math.nan
        lo, hi = lo * q_ref * 100, hi * q_ref * 100
    lim = c.max_drop.value
    return ("within" if hi <= lim else "beyond" if lo > lim else "undecided"), lo, hi


def predicted_view(rec: Recommendation, db: Path, scope: dict, settings=None) -> dict:
    """The predicted cells' section of the advisor's answer (JSON-ready)."""
    if settings is None:
        from harness.settings import load_settings

        settings = load_settings()
    c = rec.constraints
    host = scope.get("host")
    roof = roofline_reason(rec)
    if host in (None, "all"):
        return {"rows": [], "next": None, "roofline": roof, "notes": ["--host all: predictions are per host"]}
    try:
        preds, notes = candidates(rec, db, host, settings)
    except Exception as exc:  # noqa: BLE001 - predictions add to an answer; they never break it
        return {"rows": [], "next": None, "roofline": roof, "notes": [f"no predictions: {type(exc).__name__}: {exc}"]}
    f = rec.frame if rec.frame is not None else pd.DataFrame()
    qref = {}
    if not f.empty and "q_ref" in f:
        for m, g in f.groupby("model"):
            vals = g["q_ref"].dropna()
            qref[m] = float(vals.iloc[0]) if len(vals) else None
    rows = []
    for p in preds:
        verdict, lo, hi = _drop_fits(p, c, qref.get(p.model))
        fails = []
        mem = p.memory_gib.value if p.memory_gib else math.nan
        tok = p.decode_tok_s.value if p.decode_tok_s else math.nan
        ttft = p.ttft_ms.value if p.ttft_ms else math.nan
        if c.vram_gib is not None and not mem <= c.vram_gib:
            fails.append("memory")
        if c.max_drop is not None and verdict != "within":
            fails.append(f"quality ({verdict})")
        if c.min_tok_s is not None and not tok >= c.min_tok_s:
            fails.append("throughput")
        if c.max_ttft_ms is not None and not ttft <= c.max_ttft_ms:
            fails.append("latency (predicted TTFT p50)")
        if c.slo is not None:
            fails.append("slo (not predicted)")
        rows.append(
            {
                "source": "predicted",
                "model": p.model,
                "scheme": p.scheme,
                "engine": p.engine,
                "mem_need_gib": mem,
                "mem_interval": [p.memory_gib.lo, p.memory_gib.hi] if p.memory_gib else None,
                "tok_s": tok,
                "tok_s_interval": [p.decode_tok_s.lo, p.decode_tok_s.hi] if p.decode_tok_s else None,
                "ttft_ms_p50": ttft,
                "drop": p.drop.value if p.drop else None,
                "drop_interval": [p.drop.lo, p.drop.hi] if p.drop else None,
                "drop_verdict": verdict,
                "regime": p.limits.decode_regime if p.limits else None,
                "fits": not fails,
                "fails": fails,
                "error": (p.decode_tok_s.error if p.decode_tok_s else None),
                "prediction": p.model_dump(mode="json"),
            }
        )
    return {
        "rows": rows,
        "next": next_to_measure(rec, rows),
        "combined": combined(rec, rows),
        "roofline": roofline_reason(rec),
        "notes": notes,
    }


def roofline_reason(rec: Recommendation) -> str | None:
    """Why the winner runs at the speed it does, from its stored roofline (harness/result.Roofline): its
    measured tok/s as a % of the decode limit at its top concurrency, and which of memory or compute binds."""
    if not rec.ok:
        return None
    w = rec.ranked.iloc[0].to_dict()
    regime, pct, lim = w.get("regime_top"), w.get("roofline_pct_top"), w.get("roofline_tok_s_top")
    if not isinstance(regime, str) or lim is None or lim != lim:
        return None
    why = (
        "fewer bytes per weight would raise its ceiling"
        if regime == "memory-bound"
        else "fewer bytes per weight would not: its matmuls bind (a faster matmul dtype or fewer FLOPs would)"
    )
    head = f"{w['model']} {w['precision']}/{w['method']}/{w['distill']}"
    at = f"{pct:.0f} % of" if pct is not None and pct == pct else "its"
    pre = w.get("regime_prefill")
    tail = f"; its prefill is {pre}" if isinstance(pre, str) else ""
    return (
        f"roofline: {head} runs at {at} its decode limit of {lim:.3g} tok/s on this host's figures "
        f"({regime}: {why}){tail}"
    )


def _objective(row: dict, objective: str) -> tuple[float, bool]:
    """(value, higher is better) of a row on the objective (throughput, memory, latency; else throughput)."""
    if objective == "memory":
        return row["mem_need_gib"], False
    if objective == "latency":
        return row["ttft_ms_p50"], False
    return row["tok_s"], True


def combined(rec: Recommendation, rows: list[dict]) -> list[dict]:
    """Measured winners and fitting predicted cells in one ranking, each marked with its source."""
    c = rec.constraints
    obj = c.objective if c.objective in ("memory", "latency") else "throughput"
    meas = [
        {
            "source": "measured",
            "model": r["model"],
            "scheme": f"{r['precision']}/{r['method']}/{r['distill']}",
            "cell_id": r["cell_id"],
            "tok_s": r.get("tok_s"),
            "mem_need_gib": r.get("mem_need_gib"),
            "ttft_ms_p50": r.get("ttft_ms_p50"),
            "drop": r.get("drop"),
        }  # fmt: skip
        for r in rec.ranked.to_dict("records")
    ]
    pred = [dict(r, prediction=None) for r in rows if r["fits"]]
    both = meas + pred
    hib = _objective({"tok_s": 0, "mem_need_gib": 0, "ttft_ms_p50": 0}, obj)[1]

    def key(r: dict) -> float:
        v, _ = _objective(r, obj)
        v = v if v is not None and v == v else (-math.inf if hib else math.inf)
        return -v if hib else v

    return [{k: v for k, v in r.items() if k != "prediction"} for r in sorted(both, key=key)][: c.top * 2]


def next_to_measure(rec: Recommendation, rows: list[dict]) -> dict | None:
    """The unmeasured cell whose measurement would most likely change the answer, with why."""
    c = rec.constraints
    if not rows:
        return None
    win = rec.ranked.iloc[0].to_dict() if rec.ok else None
    obj = c.objective if c.objective in ("memory", "latency") else "throughput"
    best, best_p = None, -1.0
    for r in rows:
        if any(f.startswith(("memory", "slo")) for f in r["fails"]):
            continue
        p_q = 1.0
        if c.max_drop is not None and r["drop_interval"] and r["drop_verdict"] != "unknown":
            lo, hi = r["drop_interval"]
            sd = max((hi - lo) / (2 * Z90), 1e-9)
            lim = c.max_drop.value if c.max_drop.relative else None
            if lim is not None:
                p_q = _phi((lim - (lo + hi) / 2) / sd)
        v, hib = _objective(r, obj)
        iv = r["tok_s_interval"] if obj == "throughput" else None
        if win is None or v is None or v != v:
            p_beat, ratio = 1.0, None
        else:
            w, _ = _objective({"tok_s": win.get("tok_s"), "mem_need_gib": win.get("mem_need_gib"),
                               "ttft_ms_p50": win.get("ttft_ms_p50")}, obj)  # fmt: skip
            if w is None or w != w or w <= 0 or v <= 0:
                continue
            ratio = v / w if hib else w / v
            sd_log = math.log(iv[1] / iv[0]) / (2 * Z90) if iv and iv[0] > 0 else 0.5
            p_beat = _phi(math.log(ratio) / max(sd_log, 1e-9))
        p = p_beat * p_q
        if p > best_p:
            best, best_p = (r, ratio), p
    if best is None:
        return None
    r, ratio = best
    prob = ">99 %" if best_p > 0.99 else f"{best_p:.0%}"
    d = r["drop_interval"]
    drop = f"its drop is predicted {d[0] * 100:.1f}–{d[1] * 100:.1f} %" if d else "its drop is not predicted"
    if ratio is None:
        gain = f"it is the unmeasured cell most likely to fit (probability {prob})"
    elif ratio >= 1:
        gain = (
            f"it may beat the winner by ~{ratio:.2g}x on {obj} (probability {prob} that it beats it and "
            "fits the drop limit)"
        )
    else:
        gain = (
            f"it is predicted at {ratio:.2g}x the winner's {obj}, yet of the unmeasured cells it is the likeliest to "
            f"beat it within the drop limit (probability {prob})"
        )
    return {
        "model": r["model"],
        "scheme": r["scheme"],
        "engine": r["engine"],
        "probability": round(best_p, 3),
        "ratio": ratio,
        "text": f"measure {r['model']}/{r['scheme']} ({r['engine']}) next: {gain}; {drop} (predicted, 90 % intervals)",
    }


def render_predicted(view: dict, console) -> None:
    from rich.table import Table
    from rich.text import Text

    rows = view.get("rows") or []
    if view.get("roofline"):
        console.print(Text(view["roofline"]))
    if rows:
        t = Table(title="predicted cells (not measured on this host; 90 % intervals)")
        for col in ("model", "scheme", "engine", "GiB", "tok/s", "TTFT ms", "drop %", "regime", "fits"):
            t.add_column(col)
        for r in rows:
            ti, di = r["tok_s_interval"], r["drop_interval"]
            t.add_row(
                *(
                    Text(str(x))
                    for x in (
                        r["model"],
                        r["scheme"],
                        r["engine"],
                        f"{r['mem_need_gib']:.2f}",
                        f"{r['tok_s']:.3g} [{ti[0]:.3g}–{ti[1]:.3g}]" if ti else "-",
                        f"{r['ttft_ms_p50']:.3g}" if r["ttft_ms_p50"] == r["ttft_ms_p50"] else "-",
                        f"{r['drop'] * 100:.1f} [{di[0] * 100:.1f}–{di[1] * 100:.1f}]" if di else "-",
                        r["regime"] or "-",
                        "yes" if r["fits"] else "no: " + ", ".join(r["fails"]),
                    )
                )
            )
        console.print(t)
        err = next((r["error"] for r in rows if r["error"]), None)
        if err:
            console.print(Text(f"predicted tok/s error: {err}"))
    if view.get("next"):
        console.print(Text(view["next"]["text"]))
    for n in view.get("notes") or []:
        console.print(Text(f"note: {n}"))

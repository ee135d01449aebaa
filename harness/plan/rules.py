"""Compatibility rules, in one tested place: which grid points are cells, and which cells can run here.

`pairing` decides whether (precision, method) is a cell at all (bf16 x gptq is not a question anyone
asks). `feasibility` decides whether a cell can run on this host (its KV-cache entry included: an engine or host
that cannot keep that cache dtype, harness/plan/support.kv_cache_problem); an infeasible cell stays in the plan
with its reason and what it needs. `context_problems` decides whether the cell's requests fit the context
its engine is started with (a load test or a scoring pass that the server would refuse request by
request). Plugins contribute their own checks (group size vs layer widths, GPU needs) through their
declared capabilities; generic code never branches on a method's name.
"""

from __future__ import annotations

from harness.hw.caps import HostCaps
from harness.models.arch import ArchInfo
from harness.plan.cell import CellPlan, MemoryEstimate
from harness.plan.support import kv_cache_problem, support_problem
from harness.registry import compressors, distillers
from harness.spec.base import FULL_PRECISIONS
from harness.spec.methods import MethodSpec


def pairing(precision: str, method: str, spec: MethodSpec | None = None) -> str | None:
    """None if (precision, method) is a cell; otherwise why it is not one."""
    if precision in FULL_PRECISIONS and method != "none":
        return f"{precision} x {method}: {precision} is an uncompressed precision; methods apply to fp8/int* only"
    if precision not in FULL_PRECISIONS and method == "none":
        return f"{precision} x none: {precision} needs a compression method"
    if spec is not None and spec.precisions is not None and precision not in spec.precisions:
        return f"{precision} x {method}: methods.{method}.precisions is {spec.precisions}"
    return None


def student_pairing(student, method: str) -> str | None:
    """None if a student is crossed with `method`; otherwise why not (students[].methods)."""
    if student is None or method == "none" or student.methods is None or method in student.methods:
        return None
    return f"{student.name} x {method}: students[{student.name}].methods is {student.methods}"


def student_problems(cell: CellPlan, teacher: ArchInfo | None, student: ArchInfo | None, matrix) -> list[str]:
    """Why a student cell cannot run: no plugin, a vocabulary mismatch for logit matching, the training
    corpus overlapping an evaluated split."""
    spec = cell.student
    if spec is None:  # not a student cell: nothing to check
        return []
    if spec.kind not in distillers:
        return [
            f"distill {cell.distill!r}: no distiller plugin of kind {spec.kind!r} in this build "
            f"(available: {', '.join(distillers.names()) or 'none'})"
        ]
    reasons = distillers.get(spec.kind)(spec).plan_problems(cell, teacher, student)
    if spec.kind != "untrained":
        from harness.distill.data import HELDOUT_FROM

        for lam in (t for t in matrix.evaluation.tasks if _reads_lambada(t.name)):
            if lam.limit is None or lam.limit > HELDOUT_FROM:
                reasons.append(
                    f"evaluation.tasks {lam.name} limit {lam.limit} reaches LAMBADA documents >= "
                    f"{HELDOUT_FROM}, which students[{spec.name}] trains on; set limit <= {HELDOUT_FROM}"
                )
    return reasons


def _reads_lambada(task: str) -> bool:
    """dq_lambada and lm-eval's tasks over the same LAMBADA (OpenAI) test documents, in the same order."""
    from harness.evaluate import catalog

    return task == "dq_lambada" or any(
        lf.dataset == "EleutherAI/lambada_openai|default" for lf in catalog.leaves(task) or []
    )


def engine_for(method_spec: MethodSpec | None) -> str:
    """The engine that serves a cell: the first one its compressor's output runs on."""
    kind = method_spec.kind if method_spec else "none"
    return compressors.get(kind).engines[0] if kind in compressors else "vllm"


# Engines whose server also scores the cell (lm-eval and the shift dumps send windows to it with echo and
# max_tokens 1). llama.cpp cells are scored in-process on the same GGUF file with a context of their own
# (harness/evaluate/llamacpp_lm.py, harness/evaluate/logprobs_worker.py), so only their load test meets the slots.
SCORED_BY_SERVER = {"vllm": True, "llamacpp": False}


def context_problems(cell: CellPlan) -> list[str]:
    """Requests that cannot fit the context the cell's server is started with, with the numbers and the fix.

    vLLM's context is serving.max_model_len; llama-server is started with `-c max_model_len x parallel` and
    `-np parallel` (harness/serve/llamacpp.py), so each request gets max_model_len tokens, one slot."""
    serving = cell.serving
    ctx = getattr(serving, "max_model_len", None)
    if ctx is None:
        return []
    engine = serving.kind
    where = f"max_model_len of the `kind: {engine}` serving entry"
    what = f"{where} {ctx}" + (" (per slot)" if engine == "llamacpp" else "")
    load = cell.load
    reasons = []
    # the longest request of load.workload (a chat's last turn carries its history; drawn lengths their max)
    prompt, output = load.workload.longest(load.input_tokens, load.output_tokens)
    if prompt + output > ctx:
        fixed = load.workload.kind == "fixed"
        sizes = (
            f"load.input_tokens {prompt} + load.output_tokens {output}"
            if fixed
            else f"the longest request of the {load.workload.kind} workload, {prompt} prompt + {output} output"
        )
        reasons.append(
            f"{sizes} = {prompt + output} tokens per request exceed {what}: "
            f"{'every request' if fixed else 'the longest requests'} would be refused; raise {where} to "
            f">= {prompt + output} or shorten the requests"
        )
    if SCORED_BY_SERVER.get(engine):
        max_length = getattr(cell.evaluation, "max_length", None)
        # lm-eval asks for one generated token after each window of up to max_length tokens
        if max_length is not None and max_length + 1 > ctx:
            reasons.append(
                f"evaluation.max_length {max_length} + 1 scored token exceeds {what}: lm-eval's longest "
                f"windows would be refused; lower evaluation.max_length to <= {ctx - 1} or raise {where} "
                f"to >= {max_length + 1}"
            )
        shift = getattr(cell.evaluation, "shift", None)
        # a shift window is tokens + 1 ids sent with max_tokens 1 (harness/evaluate/reference.py)
        if shift is not None and shift.tokens + 2 > ctx:
            reasons.append(
                f"evaluation.shift.tokens {shift.tokens} (+ 2: the window's next token and one generated) "
                f"exceeds {what}; lower evaluation.shift.tokens to <= {ctx - 2} or raise {where} to >= "
                f"{shift.tokens + 2}"
            )
    return reasons


def feasibility(
    cell: CellPlan,
    arch: ArchInfo | None,
    caps: HostCaps,
    budget_gib: float | None,
    estimate: MemoryEstimate | None,
    model_problem: str | None,
) -> list[str]:
    """Every reason `cell` cannot run on this host (empty list: it can)."""
    reasons: list[str] = []
    if model_problem:
        reasons.append(model_problem)
    if cell.device == "cuda" and caps.device != "cuda":
        reasons.append(
            "needs a CUDA GPU (hardware.device: cuda) and this host has none; run it on a GPU host "
            "or set hardware.device: cpu"
        )
    kind = cell.method_spec.kind if cell.method_spec else "none"
    if kind not in compressors:
        reasons.append(
            f"method {cell.method!r}: no compressor plugin of kind {kind!r} in this build "
            f"(available: {', '.join(compressors.names())})"
        )
    else:
        plugin = compressors.get(kind)()
        produces = cell.precision in plugin.precisions
        if not produces:
            reasons.append(
                f"method {cell.method!r} ({kind}) cannot produce {cell.precision}; it supports "
                f"{', '.join(plugin.precisions)}"
            )
        if plugin.needs_gpu and cell.device != "cuda":
            reasons.append(
                f"method {cell.method!r} ({kind}) needs a CUDA GPU to compress (hardware.device: cuda on a GPU host)"
            )
        if cell.serving.kind not in plugin.engines:
            reasons.append(
                f"method {cell.method!r} output is not served by {cell.serving.kind} "
                f"(served by: {', '.join(plugin.engines)})"
            )
        elif produces:
            why = support_problem(plugin.scheme(cell), cell.serving.kind, cell.device, caps)
            if why:
                reasons.append(f"method {cell.method!r}: {why}")
        missing = plugin.missing_packages()
        if missing:
            reasons.append(f"method {cell.method!r} ({kind}) needs {missing}")
        if produces:
            reasons.extend(plugin.plan_problems(cell, arch))
    if cell.kv_cache != "auto":  # axes.kv_cache: the cell's engine and host must keep the cache in that dtype
        extra = getattr(cell.serving, "engine_args", None) or getattr(cell.serving, "extra_args", None) or {}
        head_dim = arch.head_dim if arch else None
        why = kv_cache_problem(cell.kv_cache, cell.serving.kind, cell.device, caps, extra, head_dim)
        if why:
            reasons.append(why)
    reasons.extend(context_problems(cell))
    if estimate and budget_gib is not None and estimate.total_gib > budget_gib:
        reasons.append(
            f"estimated memory {estimate.total_gib:.1f} GiB exceeds hardware.memory_gib {budget_gib:g} "
            f"({estimate.basis})"
        )
    return reasons

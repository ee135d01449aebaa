"""The steps of a cell, in order: `STEPS = [prepare, distill, compress, draft, serve, measure, evaluate, shift,
speculative]` (distill: students only; draft and speculative: spec-decoded cells only, harness/cell/speculative.py).

Each is a small function `step(run: CellRun) -> None` that calls one part of the pipeline (a plugin from
harness/registry.py, or harness/measure, harness/evaluate) and leaves its block on the CellRun. None of
them times itself, watches the server, enforces a deadline or stops anything: the loop in
harness/cell/run.py does that for every step alike. Stopping the server is the loop's last act, not a
step, because it must happen however the steps ended.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from harness.cell.context import CellRun, Step
from harness.errors import StageError
from harness.evaluate.reference import compare_with_reference
from harness.measure.energy import EnergyProbe, open_counter
from harness.measure.memory_sampler import PeakSampler
from harness.measure.run import LevelProbe
from harness.measure.run import measure as run_load
from harness.models.sources import check_remote_code, source_for
from harness.proc import deadline_left
from harness.registry import compressors, evaluators, servers
from harness.result import Serve
from harness.worker_ahead import settle_ahead

if TYPE_CHECKING:
    from harness.serve.base import ServerHandle

# how long the load test waits for a worker started ahead to finish its imports and its task builds (7-25 s on an
# idle 2-core host, inside the server's start); past it the worker is cancelled and its job runs in a fresh one,
# as without it
AHEAD_WARM_S = 120.0


def prepare(run: CellRun) -> None:
    """The model source (prepared once, e.g. the embedded model) and the evaluator's task data."""
    cell = run.cell
    run.source = source = source_for(cell.model, run.settings)
    run.evaluator = evaluator = evaluators.get(cell.evaluation.kind)(cell.evaluation, run.settings)
    source.prepare(run.paths.log("prepare"))
    evaluator.prepare(run.paths.log("prepare"))
    run.model = source.fingerprint().model_dump(mode="json")  # the result's `model` block, as stored
    run.model_src = source.resolve()
    check_remote_code(cell.model, run.model_src)  # a hub model downloaded just now (harness/plan/trust.py)


def distill(run: CellRun) -> None:
    """A student cell's checkpoint: trained, or found in the student cache (harness/distill/)."""
    from harness.cell.distill import student_block

    run.distill = block = student_block(run, run.need(run.source, "the model source"))
    run.model_src = block["path"]


def compress(run: CellRun) -> None:
    """The artefact the cell serves (`none`: the checkpoint itself); a spec-decoded cell's is its target's,
    made in (or found in) the target's work folder."""
    cell = run.cell
    if run.evaluator is not None and not (server_kind := servers.get(cell.serving.kind)).starts_slowly:
        # a start of a second or two (llama-server) leaves nothing to start the evaluate worker beside; making the
        # artefact (a GGUF conversion: one Python process for most of it) or a spec cell's draft (the same) does
        _start_evaluate_ahead(run, server_kind(cell.serving, run.settings.python, cell.device))
    compressor = compressors.get(cell.method_spec.kind if cell.method_spec else "none")()
    paths = run.paths
    if _has_draft(cell):
        from harness.cell.speculative import target_work

        paths = target_work(run)
    run.artefact = compressor.compress(cell, run.model_src, paths, run.settings)


def draft(run: CellRun) -> None:
    """A spec-decoded cell's draft: its student cell prepared, trained and compressed, or its hub/local model."""
    from harness.cell.speculative import build_draft

    run.draft_model = build_draft(run, distill=distill, compress=compress)


def serve(run: CellRun) -> None:
    """Start the engine on the artefact (it checks that what was loaded is what was planned), then sample
    its memory until the cell ends."""
    cell = run.cell
    run.server = server = servers.get(cell.serving.kind)(cell.serving, run.settings.python, cell.device)
    if run.draft_model is not None:  # speculative decoding (issue #28): the engine adds the draft's flags
        if not hasattr(server, "draft"):
            raise StageError("serve", f"server plugin {cell.serving.kind!r} takes no draft (EngineServer.draft)")
        server.draft = run.draft_model
    if cell.kv_cache != "auto":  # axes.kv_cache (issue #27): the engine adds its own option and reads it back
        if not hasattr(server, "kv_cache"):
            raise StageError("serve", f"server plugin {cell.serving.kind!r} takes no KV cache (EngineServer.kv_cache)")
        server.kv_cache = cell.kv_cache
    artefact = run.need(run.artefact, "the artefact")
    if server.starts_slowly:  # on the core the server's start-up leaves idle (a quick start's: compress)
        _start_evaluate_ahead(run, server)
    run.handle = handle = server.start(artefact, run.served_name, run.paths.log("server"), cell.model.trust_remote_code)
    run.serve = Serve(
        engine=handle.engine,
        command=handle.command,
        startup_s=handle.startup_s,
        loaded=handle.loaded,
        port=handle.port,
    )
    run.progress.note(f"server up in {handle.startup_s:.1f} s on port {handle.port}")
    # GPU memory only for a cell served on the GPU: a CPU cell on a GPU host would read other processes' use
    run.memory_sampler = run.resources.enter_context(PeakSampler(handle.pid, gpu=cell.device == "cuda"))


def _start_evaluate_ahead(run: CellRun, server: Any) -> None:
    """The evaluate worker started before its job is known, in the environment the engine's scoring will ask for:
    its imports and its tasks' build run beside a step that leaves a core idle (harness/worker_ahead.py). The load
    test waits for them to end (measure); the evaluate step hands it its job (with the same `sequential` as here:
    a spec-decoded cell's evaluation has its own path)."""
    if run.evaluator is None:
        return
    from harness.cell.decide import sequential_for

    seq = None if _has_draft(run.cell) else sequential_for(run)
    run.evaluator.start_ahead(run.paths.log("evaluate"), run.paths.measured, seq, env=server.evaluate_env())


def measure(run: CellRun) -> None:
    """The load test: every planned profile and level against the server."""
    handle = run.need(run.handle, "the server")
    server = run.need(run.server, "the server plugin")
    for note in settle_ahead(AHEAD_WARM_S):  # a worker started ahead must not share the host with the load test
        run.progress.note(note)
    # read around each level (issue #28): the host's energy counter, a draft's acceptance counters
    counter, meter = open_counter(run.cell.device)
    probes: list[LevelProbe] = [EnergyProbe(counter)] if counter is not None else []
    if _has_draft(run.cell):
        from harness.measure.acceptance import AcceptanceProbe
        from harness.serve.speculative import metrics_url

        probes.append(AcceptanceProbe(metrics_url(handle.engine, handle.port)))
    try:
        perf = run.perf = run_load(
            handle.base_url,
            run.served_name,
            run.cell.load,
            run.need(run.artefact, "the artefact").tokenizer_src,
            extra=server.request_extras,
            keepalive=server.http_keepalive,
            on_level=run.progress.level,
            health=_health_or_deadline(handle),
            probes=probes,
            energy=meter,
        )
    finally:
        if counter is not None:
            counter.close()
    if _has_draft(run.cell):  # each level's speed-up over the target's stored level
        from harness.cell.speculative import target_result, with_speedups

        perf = run.perf = with_speedups(perf, target_result(run))
    if perf.stopped:
        raise StageError("measure", perf.stopped, handle.failure_tail())


def evaluate(run: CellRun) -> None:
    """lm-eval on the planned tasks, scored as the serving plugin says (through the server or in-process); with
    the matrix's `decide:`, the measured tasks until the question is decided (harness/cell/decide.py)."""
    from harness.cell.decide import decision_line, sequential_for, skip_reason, skipped_quality

    skip = skip_reason(run)
    if skip is not None:  # --until-decided: this cell cannot change the answer
        run.quality = skipped_quality(run, skip)
        run.progress.note(f"evaluation skipped: {skip}")
        return
    handle, artefact = run.need(run.handle, "the server"), run.need(run.artefact, "the artefact")
    scoring = run.need(run.server, "the server plugin").scoring(handle, artefact)
    evaluator = run.need(run.evaluator, "the evaluator")
    if _has_draft(run.cell):  # only what the draft can change is scored again (harness/cell/speculative.py)
        from harness.cell.speculative import evaluate_spec

        quality = run.quality = evaluate_spec(run)
    else:
        seq = sequential_for(run)
        quality = run.quality = evaluator.evaluate(
            scoring, run.paths.measured, run.paths.log("evaluate"), **({"sequential": seq} if seq else {})
        )
    for name, t in quality.tasks.items():
        figures = (f"{m}={v.value:.4g}" for m, v in t.metrics.items() if v.value is not None)
        run.progress.note(f"{name}: " + ", ".join(figures))
    if quality.decision is not None:
        run.progress.note(decision_line(quality.decision))


def shift(run: CellRun) -> None:
    """Token distribution and per-item answers against the cell's reference (harness/evaluate/reference.py)."""
    from harness.cell.decide import is_skipped

    if is_skipped(run.quality):  # --until-decided skipped its quality: nothing to compare
        return
    handle, artefact = run.need(run.handle, "the server"), run.need(run.artefact, "the artefact")
    scoring = run.need(run.server, "the server plugin").scoring(handle, artefact)
    same = None
    if _has_draft(run.cell):  # a dump the draft cannot change is the target's (harness/cell/speculative.py)
        from harness.cell.speculative import target_dump

        same = target_dump(run)
    result = run.shift = compare_with_reference(
        run.cell,
        scoring,
        artefact.tokenizer_src,
        run.settings,
        run.paths.measured,
        run.paths.log("shift"),
        quality=run.quality,  # the cell's own per-item scores, as evaluate just made them
        same_dump=same,
    )
    if same is not None:
        run.progress.note(f"logprob dump: {same[1]}")
    if result and result.get("metrics"):
        m = result["metrics"]
        run.progress.note(
            f"vs reference: KLD mean {m['kld_mean']:.4f} p99 {m['kld_p99']:.4f}, "
            f"top-1 agreement {m['top1_agreement']:.1%}, ppl ratio {m['ppl_ratio']:.3f}"
        )


def speculative(run: CellRun) -> None:
    """A spec-decoded cell's draft, prediction, acceptance, speed-up and equal-output check (issue #28)."""
    from harness.cell.speculative import speculative_block

    block = run.speculative = speculative_block(run)
    m = block.mean_accepted_len
    p = block.predicted.mean_accepted_len if block.predicted else None
    run.progress.note(
        f"draft {block.draft}: acceptance {block.acceptance_rate or 0:.1%}, mean accepted length {m:.2f}"
        + (f" (predicted {p:.2f})" if p is not None else "")
        + (f", speed-up {block.speedup_c1:.2f}x at c1" if block.speedup_c1 else "")
        + (f", equal output: {block.equal_output.verdict}" if block.equal_output else "")
    )


def _health_or_deadline(handle: ServerHandle) -> Callable[[], str | None]:
    """The load generator's stop check: the server's health, and the cell's deadline (the load test runs
    in this process, so no worker timeout covers it)."""

    def check() -> str | None:
        d = deadline_left()
        if d is not None and d[0] == 0.0:
            return f"{d[1]} reached during the load test"
        return handle.health_problem()

    return check


def _is_student(cell: Any) -> bool:
    return cell.student is not None


def _has_draft(cell: Any) -> bool:
    return getattr(cell, "draft", None) is not None


STEPS: list[Step] = [
    Step("prepare", prepare),
    Step("distill", distill, applies=_is_student),
    Step("compress", compress),
    Step("draft", draft, applies=_has_draft),
    Step("serve", serve),
    Step("measure", measure, uses_server=True),
    Step(
        "evaluate",
        evaluate,
        uses_server=True,
        limit=lambda lim: lim.evaluate_timeout_s,
        limit_name="limits.evaluate_timeout_s",
    ),
    Step("shift", shift, uses_server=True, limit=lambda lim: lim.shift_timeout_s, limit_name="limits.shift_timeout_s"),
    Step("speculative", speculative, applies=_has_draft),
]

# which step produces each block: a block that does not fit the result contract fails that step
BLOCK_STEP = {
    "model": "prepare",
    "distill": "distill",
    "artefact": "compress",
    "serve": "serve",
    "perf": "measure",
    "memory": "measure",
    "quality": "evaluate",
    "shift": "shift",
    "speculative": "speculative",
}

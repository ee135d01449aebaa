"""The distill step's work: a student cell's checkpoint, trained by its distiller plugin (or found in the
student cache), after the served teacher has answered the prompt set when the method trains on its
generations. One teacher server per answer set: a cell needing the same answers waits on its lock, then
reads them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import StageError
from harness.locks import file_lock
from harness.registry import distillers, servers
from harness.spec.students import GKDStudent, SFTStudent

if TYPE_CHECKING:
    from harness.cell.context import CellRun
    from harness.contracts import ModelSourceContract


def student_block(run: CellRun, source: ModelSourceContract) -> dict[str, Any]:
    """Train (or reuse) the cell's student; the result's `distill` block (its lineage and cost)."""
    from harness.distill.cost import for_student
    from harness.distill.data import TrainData
    from harness.distill.generate import read_generations

    cell, settings, progress = run.cell, run.settings, run.progress
    spec = cell.student
    if spec is None:
        raise RuntimeError("the distill step ran for a cell without a student")
    distiller = distillers.get(spec.kind)(spec)
    data = TrainData(settings)
    data.prepare(run.paths.log("prepare"))
    teacher_dir, teacher_fp = source.resolve(), source.fingerprint().model_dump(mode="json")
    gens, gen_info = None, None
    if distiller.needs_generations:
        if not isinstance(spec, SFTStudent | GKDStudent):
            raise StageError("distill", f"{spec.kind} trains on teacher generations but its spec names no prompt set")
        gens = distiller.generations_path(teacher_fp, data.fingerprint(), settings)
        prompts = data.prompts(spec.prompts, spec.num_prompts)
        # one teacher server per answer set: a second cell that needs the same answers (a Ray neighbour)
        # waits here, then finds them written, instead of starting an idle teacher of its own
        with file_lock(
            gens.with_name(gens.name + ".serve.lock"),
            what=f"the teacher answering for {spec.name}",
            on_wait=progress.note,
        ):
            if read_generations(gens, prompts) is None and not distiller.is_built(teacher_fp, data, settings):
                gen_info = teacher_answers(run, spec, teacher_dir, prompts, gens)
    student = distiller.build(cell, teacher_dir, teacher_fp, data, settings, run.paths.log("distill"), gens)
    rec = student.record
    if not student.reused and rec.get("loss_curve"):
        first, last = rec["loss_curve"][0], rec["loss_curve"][-1]
        progress.note(
            f"{spec.name}: {rec['steps']} steps, {rec['tokens_seen']} tokens, loss {first['loss']:.3f} -> "
            f"{last['loss']:.3f} in {rec['train_s']:.0f} s ({rec['stopped_by']})"
        )
    fallback = cell.estimate.params if cell.estimate else rec["student_params"]
    cost = for_student(spec, rec, fallback) if distiller.trains else None
    return {
        "kind": spec.kind,
        "name": spec.name,
        "student_key": student.key,
        "path": str(student.path),
        "reused": student.reused,
        "teacher_id": cell.teacher_id,
        "teacher": teacher_fp,
        "generation": gen_info,
        "record": rec,
        "cost": cost,
    }


def teacher_answers(
    run: CellRun, spec: SFTStudent | GKDStudent, teacher_dir: str, prompts: list[str], gens: Path
) -> dict[str, Any]:
    """Serve the teacher, have it answer `prompts` into `gens`, stop it; the generation summary."""
    from harness.compress.identity import DTYPE
    from harness.distill.generate import generate
    from harness.result import Artefact

    cell, progress = run.cell, run.progress
    serving, compute = cell.teacher_serving, cell.compute_dtype
    if serving is None or compute is None:
        raise StageError("distill", "the plan gave this student cell no teacher serving spec or compute dtype")
    progress.note(f"teacher answers {spec.num_prompts} prompts ({spec.prompts}) for {spec.name}")
    server = servers.get(serving.kind)(serving, run.settings.python, cell.device)
    dtype = DTYPE[compute]  # the teacher answers in the lineage's reference dtype
    teacher_name = f"dq-teacher-{cell.teacher_id or cell.cell_id}"  # one name per served teacher
    handle = server.start(
        Artefact(model=str(teacher_dir), dtype=dtype, quantization=None, size_bytes=None, bits_per_weight=16.0),
        teacher_name,
        run.paths.log("teacher-server"),
        cell.model.trust_remote_code,
    )
    try:
        info = generate(
            handle.base_url,
            teacher_name,
            prompts,
            gens,
            max_tokens=spec.max_new_tokens,
            temperature=spec.generation_temperature,
            seed=spec.seed,
            on_progress=None if progress.quiet else progress.update,
        )
    finally:
        handle.stop()
    progress.note(f"teacher generations: {info['completion_tokens']} tokens in {info['wall_s']} s")
    return info

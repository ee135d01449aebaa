"""Our logit-KD training loop (runs in the training environment: torch): the loss is ours
(harness/distill/loss.py), the teacher's top-k logits are cached on disk for every run that needs the same
ones, feature KD hooks the mapped layers (harness/distill/features.py).

Run by harness/distill/distill_worker.py for `logit_kd` students and by the QAT worker (harness/compress/qat.py),
which trains a model against itself under a fake quantizer. What the loop holds in memory follows the
recipe's weights_dtype, optimizer and gradient_checkpointing, and the plan estimates it from the same rules
(harness/distill/training_memory.py): keep the two in step.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path

import torch

from harness.distill.budget import planned_steps
from harness.distill.features import LayerTap, feature_loss, layer_map
from harness.distill.loss import kd_loss, teacher_topk
from harness.distill.train_common import DEVICE, autocast, compute_note, heldout, memory_record, offload
from harness.distill.train_io import (
    CurvePoint,
    FeatureKD,
    KDRecipe,
    KDTraining,
    TeacherCacheInfo,
    TeacherCacheRef,
)
from harness.proc import WorkerProgress

TopK = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # values, indices, logsumexp per window position


def make_optimizer(params: list, recipe: KDRecipe):
    """AdamW, or torchao's AdamW8bit (block-wise int8 moments; stochastic rounding onto bf16 weights)."""
    lr, betas, wd = recipe.learning_rate, (0.9, 0.95), recipe.weight_decay
    if recipe.optimizer == "adamw_8bit":
        from torchao.optim import AdamW8bit

        return AdamW8bit(
            params, lr=lr, betas=betas, weight_decay=wd, bf16_stochastic_round=recipe.weights_dtype == "bf16"
        )
    return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=wd)


def checkpointing(model, recipe: KDRecipe) -> None:
    """Gradient checkpointing when the recipe asks: each decoder layer's activations are recomputed in the
    backward pass (the non-reentrant variant: it needs no input that requires grad)."""
    if recipe.gradient_checkpointing:
        model.config.use_cache = False
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def lr_at(step: int, recipe: KDRecipe, total: int | None) -> float:
    """Linear warm-up, then cosine to 10 % over the planned steps (constant when only time bounds the run)."""
    base, warm = recipe.learning_rate, recipe.warmup_steps
    if step < warm:
        return base * (step + 1) / warm
    if not total:
        return base
    t = min(1.0, (step - warm) / max(1, total - warm))
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def teacher_cache(
    ref: TeacherCacheRef, teacher, data: torch.Tensor, k: int, temperature: float
) -> tuple[TopK, TeacherCacheInfo]:
    """Top-k teacher logits for `data`, computed once and kept on disk for every student and run that
    uses the same teacher, windows, k and T. Two trainers needing the same file: one computes it under the
    file's lock, the other waits and loads it; it is saved at a unique temporary name and renamed into
    place, and a file that does not load whole (with one row per window) is computed again."""
    from harness.locks import build_once, wait_reporter

    h = hashlib.sha256(json.dumps({"teacher": ref.fingerprint, "k": k, "T": temperature}, sort_keys=True).encode())
    h.update(data.numpy().tobytes())
    path = Path(ref.folder) / f"{h.hexdigest()[:16]}.pt"
    loaded: dict = {}

    def valid(p: Path) -> bool:
        if not p.is_file():
            return False
        try:
            # tensors only, never an object: the cache sits under DQBENCH_HOME, shared on clusters (issue #30)
            c = torch.load(p, weights_only=True)
            ok = all(len(c[x]) == len(data) for x in ("values", "indices", "lse"))
        except Exception:  # noqa: BLE001 - a truncated or foreign file is recomputed, whatever torch raises
            return False
        if ok:
            loaded.update(c)
        return ok

    def build(tmp: Path) -> None:
        parts = []
        report = WorkerProgress("teacher top-k logits", "windows", total=len(data))
        with torch.no_grad():
            for i in range(0, len(data), 4):
                with autocast():
                    logits = teacher(input_ids=data[i : i + 4].to(DEVICE)).logits
                parts.append(tuple(x.cpu() for x in teacher_topk(logits, k, temperature)))
                report.update(min(i + 4, len(data)))
        values, indices, lse = (torch.cat(x) for x in zip(*parts))
        torch.save({"values": values, "indices": indices, "lse": lse}, tmp)

    t0 = time.monotonic()
    path.parent.mkdir(parents=True, exist_ok=True)
    built = build_once(
        path, what=f"the teacher logit cache {path.name}", valid=valid, build=build, on_wait=wait_reporter(None)
    )
    c = loaded  # filled by the check that let build_once return
    info = TeacherCacheInfo(path=str(path), hit=not built, build_s=round(time.monotonic() - t0, 2) if built else 0.0)
    if built:
        info.bytes = path.stat().st_size
    return (c["values"], c["indices"], c["lse"]), info


def _r(x) -> float:
    return float(f"{x.item():.6g}")


def train_logit_kd(
    recipe: KDRecipe,
    cache: TeacherCacheRef,
    student,
    teacher,
    train: torch.Tensor,
    held: torch.Tensor,
    what: str = "training",
) -> KDTraining:
    alpha, T, k, bs = recipe.alpha, recipe.temperature, recipe.top_k, recipe.batch_size
    total = planned_steps(recipe)
    deadline = time.monotonic() + recipe.max_minutes * 60 if recipe.max_minutes else None
    n_win = min(len(train), total * bs) if total else len(train)
    data = train[:n_win]
    cache_info = None
    topk = None
    if alpha > 0 and k > 0 and total:
        topk, cache_info = teacher_cache(cache, teacher, data, k, T)
    feat = _feature_setup(recipe, student, teacher)
    params = list(student.parameters()) + (list(feat["proj"].parameters()) if feat else [])
    opt = make_optimizer(params, recipe)
    checkpointing(student, recipe)
    torch.manual_seed(recipe.seed)
    before = heldout(student, teacher, held)
    # on a GPU the teacher leaves it while the loop never calls it (cached top-k logits or the CE control)
    teacher_off = DEVICE == "cuda" and (topk is not None or alpha == 0) and not feat
    if teacher_off:
        offload(teacher, "cpu")
    curve: list[CurvePoint] = []
    tokens, step, stopped_by = 0, 0, "data"
    report = WorkerProgress(what, "steps", total=total)
    t0 = time.monotonic()
    student.train()
    while True:
        if total and step >= total:
            stopped_by = "max_steps" if recipe.max_steps == total else "max_tokens"
            break
        if deadline and time.monotonic() >= deadline:
            stopped_by = "max_minutes"
            break
        idx = [(step * bs + j) % n_win for j in range(bs)]  # wraps (more epochs) only when time bounds the run
        x = data[idx].to(DEVICE)
        lr = lr_at(step, recipe, total)
        for g in opt.param_groups:
            if isinstance(g["lr"], torch.Tensor):  # torchao's optimizers keep lr as a tensor (no recompile)
                g["lr"].fill_(lr)
            else:
                g["lr"] = lr
        with autocast():
            logits = student(input_ids=x).logits
        f_loss = None
        if feat:
            with torch.no_grad(), autocast():
                teacher(input_ids=x)  # the taps keep the mapped layers' outputs
            f_loss = feature_loss(feat["s_tap"].out, feat["t_tap"].out, feat["map"], feat["proj"])
        if alpha == 0:
            parts = kd_loss(logits, x, alpha=0.0, temperature=T)
        elif topk is not None:
            parts = kd_loss(logits, x, alpha=alpha, temperature=T, topk=tuple(t[idx].to(DEVICE) for t in topk))
        else:
            with torch.no_grad(), autocast():
                t_logits = teacher(input_ids=x).logits
            parts = kd_loss(logits, x, alpha=alpha, temperature=T, teacher_logits=t_logits)
        loss = parts["loss"] + recipe.feature_weight * f_loss if f_loss is not None else parts["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        tokens += x.numel()
        point = CurvePoint(
            step=step,
            loss=_r(loss),
            ce=_r(parts["ce"]),
            kd=_r(parts["kd"]),
            lr=lr,
            grad_norm=round(float(gnorm), 4),
            tokens=tokens,
            elapsed_s=round(time.monotonic() - t0, 2),
        )
        if f_loss is not None:
            point.feat = _r(f_loss)
        curve.append(point)
        print(json.dumps(point.model_dump(mode="json")), flush=True)
        # bounded by time only: the deadline is the ETA
        report.update(
            step,
            loss=point.loss,
            eta_s=None if total or not deadline else round(max(0.0, deadline - time.monotonic()), 1),
        )
    train_s = time.monotonic() - t0
    if feat:
        feat["s_tap"].remove()
        feat["t_tap"].remove()
    memory = memory_record(recipe.weights_dtype, recipe.optimizer, teacher_off, opt, student)
    # the optimizer states and gradients are not needed for the held-out pass: free them before the
    # teacher comes back
    opt.zero_grad(set_to_none=True)
    del opt
    if teacher_off:
        offload(teacher, DEVICE)
    return KDTraining(
        loss_curve=curve,
        steps=step,
        compute=compute_note(recipe.weights_dtype),
        memory=memory,
        feature_kd=FeatureKD(
            weight=recipe.feature_weight,
            layers=feat["map"],
            projection=sorted(feat["proj"].keys()) or "none (same width)",
        )
        if feat
        else None,
        tokens_seen=tokens,
        train_s=round(train_s, 2),
        tokens_per_s=round(tokens / train_s, 1) if train_s else None,
        stopped_by=stopped_by,
        teacher_cache=cache_info,
        heldout_before=before,
        heldout_after=heldout(student, teacher, held),
        loss="alpha*T^2*KL(teacher_T||student_T) + (1-alpha)*CE"
        + (
            f"; teacher top-{k} + rest bucket (cached)"
            if topk is not None
            else "; cross-entropy only (no teacher)"
            if alpha == 0
            else "; full teacher logits"
        )
        + (f"; + {recipe.feature_weight} x normalised MSE of mapped layer outputs" if feat else ""),
    )


def _feature_setup(recipe: KDRecipe, student, teacher) -> dict | None:
    """Hooks on the mapped layers and the projections (trained with the student, not saved)."""
    if not recipe.feature_weight:
        return None
    mapping = layer_map(
        recipe.feature_layers,
        recipe.student.kind,
        recipe.student.keep_every,
        len(teacher.model.layers),
        len(student.model.layers),
    )
    ds, dt = student.config.hidden_size, teacher.config.hidden_size
    proj = torch.nn.ModuleDict({str(i): torch.nn.Linear(ds, dt, bias=False) for i in mapping} if ds != dt else {})
    proj.to(DEVICE)
    return {
        "map": mapping,
        "proj": proj,
        "s_tap": LayerTap(student, sorted(mapping)),
        "t_tap": LayerTap(teacher, sorted(set(mapping.values()))),
    }

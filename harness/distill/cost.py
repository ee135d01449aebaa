"""GPU-hours and cost a distillation run would take, from FLOPs (pure arithmetic, no backend).

Formula (the usual transformer estimate, Kaplan et al. 2020; N counts every parameter once, a tied
embedding included, because the LM-head matmul is real work):
  forward = 2 N FLOPs per token, forward + backward = 6 N per token.
  logit_kd : 6 N_s D  +  2 N_t D (teacher forward; 0 when alpha = 0, the cross-entropy control)
  sft      : 6 N_s D  +  2 N_t G (the teacher generating G prompt + answer tokens)
  gkd      : 6 N_s D  +  2 N_t D  +  2 N_s G_on (the student's on-policy samples)
  GPU-hours = FLOPs / (peak FLOP/s x MFU x 3600); cost = GPU-hours x price per GPU-hour.
Decoding is memory-bound, so generation at 2 N per token is optimistic; the estimate says so.
"""

from __future__ import annotations

from typing import Any


def run_flops(
    kind: str,
    n_teacher: float,
    n_student: float,
    tokens: float,
    *,
    alpha: float = 0.5,
    gen_tokens: float = 0.0,
    on_policy_tokens: float = 0.0,
) -> dict[str, float]:
    """FLOPs of one run by part (student training, teacher forward, generation)."""
    parts = {"student_train": 6.0 * n_student * tokens, "teacher_forward": 0.0, "generation": 0.0}
    if kind == "logit_kd" and alpha > 0:
        parts["teacher_forward"] = 2.0 * n_teacher * tokens
    elif kind == "sft":
        parts["generation"] = 2.0 * n_teacher * gen_tokens
    elif kind == "gkd":
        parts["teacher_forward"] = 2.0 * n_teacher * tokens
        parts["generation"] = 2.0 * n_student * on_policy_tokens
    elif kind == "untrained":
        parts["student_train"] = 0.0
    parts["total"] = sum(parts.values())
    return parts


def gpu_hours(flops: float, peak_tflops: float, mfu: float) -> float:
    return flops / (peak_tflops * 1e12 * mfu * 3600.0)


def estimate(
    kind: str,
    cost,
    n_teacher: float,
    n_student: float,
    tokens: float,
    *,
    ref_teacher: float | None,
    ref_student: float | None,
    alpha: float = 0.5,
    gen_tokens: float = 0.0,
    on_policy_tokens: float = 0.0,
) -> dict:
    """This run at its own size, and the same recipe at the reference size over `cost.reference_tokens`.

    Token-proportional parts (generation) are scaled with the tokens seen: G / D stays the recipe's ratio."""

    def one(nt: float, ns: float, d: float) -> dict:
        scale = d / tokens if tokens else 0.0
        f = run_flops(
            kind, nt, ns, d, alpha=alpha, gen_tokens=gen_tokens * scale, on_policy_tokens=on_policy_tokens * scale
        )
        h = gpu_hours(f["total"], cost.peak_tflops, cost.mfu)
        return {
            "teacher_params": nt,
            "student_params": ns,
            "tokens": d,
            "flops": f,
            "gpu_hours": h,
            "usd": h * cost.usd_per_gpu_hour,
        }

    out: dict[str, Any] = {
        "formula": __doc__.split("Formula", 1)[1].strip(),
        "assumptions": cost.model_dump() if hasattr(cost, "model_dump") else dict(cost),
        "this_run": one(n_teacher, n_student, tokens),
    }
    if ref_teacher and ref_student:
        out["reference"] = one(ref_teacher, ref_student, float(cost.reference_tokens))
        out["reference"]["teacher"] = cost.reference_teacher
    return out


def for_student(spec, rec: dict, teacher_params_fallback: float) -> dict:
    """The estimate for one trained student from its training record: this run, and the same recipe with
    `spec.cost.reference_teacher` (from harness/models/arch.py KNOWN) and a student pruned alike (or scaled
    by this run's student/teacher ratio)."""
    from harness.models.arch import known_arch

    n_s = rec["student_params"]
    n_t = rec.get("teacher_params") or teacher_params_fallback
    ref = known_arch(spec.cost.reference_teacher)
    ref_s = None
    if ref is not None:
        ref_s = ref.pruned(spec.student.keep_every).params if spec.student.kind == "prune" else ref.params * n_s / n_t
    return estimate(
        spec.kind,
        spec.cost,
        n_t,
        n_s,
        rec.get("tokens_seen", 0),
        ref_teacher=ref.params if ref else None,
        ref_student=ref_s,
        alpha=getattr(spec, "alpha", 0.5),
        gen_tokens=(rec.get("generations") or {}).get("tokens", 0),
        on_policy_tokens=rec.get("on_policy_tokens", 0),
    )

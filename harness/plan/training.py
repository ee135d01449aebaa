"""A trained student at plan time: its training-memory estimate (harness/distill/training_memory.py) against the
budget, and the warning when its budget repeats the training text (harness/distill/data.py). Pure.

The budget is `hardware.memory_gib` when the matrix sets one, else the device's memory (the smallest GPU
of a CUDA host; a CPU host's RAM). Every cell of a student needs the student trained (its quantized cells
quantize it), so each of them carries the estimate and, when it does not fit, the reason.
"""

from __future__ import annotations

from harness.distill.training_memory import estimate_training
from harness.hw.caps import HostCaps
from harness.models.arch import ArchInfo
from harness.plan.cell import TrainMemoryEstimate


def bf16_native(caps: HostCaps, device: str) -> bool:
    """Whether the training worker computes under bf16 autocast on this device (as its bf16_is_native)."""
    return device == "cuda" or caps.cpu.has("avx512_bf16") or caps.cpu.has("amx_tile")


def training_budget(memory_gib: float | None, caps: HostCaps, device: str) -> tuple[float | None, str]:
    """(GiB, what it is) the training estimate is checked against."""
    if memory_gib is not None:
        return memory_gib, "hardware.memory_gib"
    if device == "cuda":
        return caps.gpu_memory_gib, "the GPU's memory"
    return caps.cpu.memory_gib, "this host's RAM"


def train_estimate(
    spec, teacher: ArchInfo | None, student: ArchInfo | None, device: str, caps: HostCaps, budget: float | None
) -> TrainMemoryEstimate | None:
    """The estimate for a trained student (None for `untrained`, or when an architecture is unknown)."""
    if spec is None or spec.kind == "untrained" or teacher is None or student is None:
        return None
    m = estimate_training(spec, teacher, student, device, bf16_native(caps, device))
    return TrainMemoryEstimate(
        device=device,
        student_params=student.params,
        teacher_params=teacher.params,
        weights_gib=m.weights,
        gradients_gib=m.gradients,
        optimizer_gib=m.optimizer,
        activations_gib=m.activations,
        logits_gib=m.logits,
        teacher_gib=m.teacher,
        step_gib=m.step,
        teacher_pass_gib=m.teacher_pass,
        total_gib=m.total,
        budget_gib=budget,
        basis=m.basis,
    )


def training_problems(spec, est: TrainMemoryEstimate | None, budget: float | None, what: str) -> list[str]:
    """Why the student cannot be trained here: its estimate exceeds the budget (with the numbers and the
    levers it does not use yet)."""
    if est is None or budget is None or est.total_gib <= budget:
        return []
    levers = []
    if spec.weights_dtype != "bf16":
        levers.append("weights_dtype: bf16 with optimizer: adamw_8bit")
    elif spec.optimizer != "adamw_8bit":
        levers.append("optimizer: adamw_8bit")
    if not spec.gradient_checkpointing:
        levers.append("gradient_checkpointing: true")
    levers.append("a smaller batch_size or seq_len")
    return [
        f"training students[{spec.name}] needs an estimated {est.total_gib:.1f} GiB on {est.device}, more than "
        f"{what} {budget:g} GiB ({est.basis}); try {', '.join(levers)}"
    ]

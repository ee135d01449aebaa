"""The distill axis (`students:`): how a student is derived from its teacher and trained (untrained, logit KD, SFT,
GKD), its budget and what training may hold in memory."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from harness.spec.base import NAME_RE, Strict
from harness.spec.sources import HubModel, LocalModel


class PruneStudent(Strict):
    kind: Literal["prune"]
    keep_every: int = Field(default=2, ge=2, le=16)


StudentModel = Annotated[PruneStudent | HubModel | LocalModel, Field(discriminator="kind")]


class CostAssumptions(Strict):
    """What a training run's GPU-hours and cost estimate assumes (harness/distill/cost.py states the formula)."""

    gpu: str = "H100-SXM"
    peak_tflops: float = Field(default=989.0, gt=0, description="dense bf16 peak of that GPU")
    mfu: float = Field(default=0.4, gt=0, le=1, description="model FLOPs utilisation a tuned run reaches")
    usd_per_gpu_hour: float = Field(default=2.5, ge=0)
    # the same recipe at a real size: teacher config from harness/models/arch.py KNOWN, student pruned alike
    reference_teacher: str = "meta-llama/Llama-3.1-8B-Instruct"
    reference_tokens: int = Field(default=1_000_000_000, ge=1, description="tokens a real distillation run sees")


class _StudentBase(Strict):
    name: str = Field(pattern=NAME_RE)
    student: StudentModel
    # Compression methods this student is crossed with (its quantized cells); None: every method on the
    # axis. Lets a matrix ask "and the KD student in W8A8" without a full grid of student cells.
    methods: list[str] | None = None


class UntrainedStudent(_StudentBase):
    """The student as derived from the teacher, before any training: the floor every method must beat."""

    kind: Literal["untrained"]


class _TrainedStudent(_StudentBase):
    # Budget: training stops at the first bound reached (the record says which). Give students that are
    # compared the same max_steps/max_tokens; max_minutes is a safety cap, not a fair budget.
    max_steps: int | None = Field(default=None, ge=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_minutes: float | None = Field(default=None, gt=0)
    batch_size: int = Field(default=4, ge=1)
    seq_len: int = Field(default=256, ge=16)
    learning_rate: float = Field(default=1e-4, gt=0)
    warmup_steps: int = Field(default=5, ge=0)
    weight_decay: float = Field(default=0.0, ge=0)
    seed: int = 0
    # Training text: LAMBADA passages held out from the dq_lambada split (documents >= 2500) interleaved
    # with the docstrings of Python's standard library. Never pydoc: the perplexity and shift windows
    # come from pydoc, and training on them would flatter every student.
    train_corpus: Literal["mixed"] = "mixed"
    cost: CostAssumptions = Field(default_factory=CostAssumptions)
    # What training holds in memory (harness/distill/training_memory.py estimates it at plan time; the worker,
    # harness/distill/distill_worker.py, honours each). weights_dtype bf16: student and teacher weights in bf16,
    # updated by the 8-bit optimizer with stochastic rounding (small updates are not lost to bf16's
    # resolution); adamw_8bit: torchao's AdamW8bit (block-wise 8-bit moments, about 2 bytes per parameter
    # instead of 8); gradient_checkpointing: each layer's activations are recomputed in the backward pass
    # (only the layer inputs are kept). Defaults are fp32 master weights, torch AdamW, no checkpointing.
    weights_dtype: Literal["fp32", "bf16"] = "fp32"
    optimizer: Literal["adamw", "adamw_8bit"] = "adamw"
    gradient_checkpointing: bool = False

    @model_validator(mode="after")
    def _bounded(self):
        if self.max_steps is None and self.max_tokens is None and self.max_minutes is None:
            raise ValueError(
                f"students[{self.name}]: a training run needs a bound; set max_steps or max_tokens "
                "(max_minutes is a safety cap)"
            )
        if self.weights_dtype == "bf16" and self.optimizer != "adamw_8bit":
            raise ValueError(
                f"students[{self.name}]: weights_dtype bf16 needs optimizer adamw_8bit (its stochastic "
                "rounding keeps updates smaller than bf16's resolution; plain AdamW on bf16 weights loses them)"
            )
        return self


class LogitKD(_TrainedStudent):
    """loss = alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE. alpha: 0 is the cross-entropy
    control (no teacher at all), 1 is pure distillation."""

    kind: Literal["logit_kd"]
    temperature: float = Field(default=2.0, gt=0)
    alpha: float = Field(default=0.5, ge=0, le=1)
    # teacher logits kept per position: the top-k plus the rest of the mass as one bucket, cached on disk
    # and reused across students and runs; 0 = full logits from a live teacher forward every step
    top_k: int = Field(default=64, ge=0, le=4096)
    # Feature distillation: + feature_weight * mean normalised MSE between student layer outputs and the
    # teacher layers they are mapped to (through a learned linear projection where widths differ).
    # Map student layer -> teacher layer; default: a pruned student's layer i <- the teacher layer it was
    # copied from, any other student evenly spread over the teacher's depth.
    feature_weight: float = Field(default=0.0, ge=0)
    feature_layers: dict[int, int] | None = None


class _GenerativeStudent(_TrainedStudent):
    # open-domain questions (TriviaQA rc.wikipedia.nocontext + NQ-open validation questions, interleaved):
    # no evaluated task draws on them
    prompts: Literal["open_qa"] = "open_qa"
    num_prompts: int = Field(default=256, ge=1, le=100_000)
    max_new_tokens: int = Field(default=128, ge=1)
    # the teacher's generations (served by vLLM) are greedy by default: one deterministic target per prompt
    generation_temperature: float = Field(default=0.0, ge=0)


class SFTStudent(_GenerativeStudent):
    """Sequence-level KD: the teacher answers a prompt set, the student is fine-tuned on the answers
    (TRL SFTTrainer)."""

    kind: Literal["sft"]


class GKDStudent(_GenerativeStudent):
    """On-policy generalized KD (TRL GKDTrainer): with probability lmbda the student's own samples, else the
    teacher's answers; loss = generalized JSD(beta) between teacher and student at `temperature`."""

    kind: Literal["gkd"]
    lmbda: float = Field(default=0.5, ge=0, le=1)
    beta: float = Field(default=0.5, ge=0, le=1)
    temperature: float = Field(default=0.9, gt=0)
    on_policy_max_new_tokens: int = Field(default=64, ge=1)


DistillSpec = Annotated[UntrainedStudent | LogitKD | SFTStudent | GKDStudent, Field(discriminator="kind")]

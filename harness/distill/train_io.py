"""What the training loops take and report, typed: the logit-KD loop's recipe (`KDRecipe`) and teacher cache
(`TeacherCacheRef`), and the parts of a training record (the loss curve, the held-out pass, what the run held
in memory, the teacher cache it used) that harness/distill/distill_worker.py's `DistillRecord` (and the QAT
worker, which runs the same loop) are made of.

Pydantic only, no torch: the parent validates the records with these classes, the worker builds them.
`Sparse` models leave the fields a run did not set out of their JSON (a logit-KD loss point has `ce` and
`kd`, a TRL one has neither; an untrained student's record has no loss curve at all), so a record reads on
disk as it always did.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer

if TYPE_CHECKING:
    from harness.spec.students import LogitKD


class Sparse(BaseModel):
    """A record part whose JSON holds only the fields that were set (explicit None included): what a worker
    left out stays out through the child's dump, the parent's validation and the parent's dump."""

    model_config = ConfigDict(extra="forbid")

    @model_serializer(mode="wrap")
    def _only_set(self, handler: SerializerFunctionWrapHandler) -> Any:
        out = handler(self)
        if isinstance(out, dict):
            return {k: v for k, v in out.items() if k in self.model_fields_set}
        return out


# ---------------------------------------------------------------------------------------------- inputs
class KDStudent(BaseModel):
    """How the student was derived, as far as the feature-KD layer map needs it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str  # prune | hub | local (a distilled student); self (QAT trains the model against itself)
    keep_every: int | None = None


class KDRecipe(BaseModel):
    """The logit-KD loop's hyper-parameters (harness/distill/kd_train.py), with the defaults it always had.
    A `logit_kd` student's spec gives them (`of`); the QAT worker builds one from its method options."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    student: KDStudent
    batch_size: int
    seq_len: int
    learning_rate: float
    weight_decay: float
    seed: int
    alpha: float
    temperature: float
    top_k: int
    feature_weight: float
    warmup_steps: int = 0
    max_steps: int | None = None
    max_tokens: int | None = None
    max_minutes: float | None = None
    feature_layers: dict[int, int] | None = None
    weights_dtype: Literal["fp32", "bf16"] = "fp32"
    optimizer: Literal["adamw", "adamw_8bit"] = "adamw"
    gradient_checkpointing: bool = False

    @classmethod
    def of(cls, spec: LogitKD) -> KDRecipe:
        """The recipe of a `logit_kd` student spec (every field but `student` is the spec's own)."""
        fields = set(cls.model_fields) - {"student"}
        student = KDStudent(kind=spec.student.kind, keep_every=getattr(spec.student, "keep_every", None))
        return cls.model_validate({"student": student, **{name: getattr(spec, name) for name in fields}})


class TeacherCacheRef(BaseModel):
    """Where the teacher's top-k logits are cached, and what identifies the teacher in the cache's key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    folder: str
    # hashed, never read: a model source's fingerprint (ModelSourceContract.fingerprint; open, a local
    # checkpoint's manifest is in it), or what the QAT worker names its model by
    fingerprint: dict[str, Any]


# --------------------------------------------------------------------------------------------- outputs
class CurvePoint(Sparse):
    """One optimizer step of the loss curve."""

    step: int
    loss: float
    ce: float | None = None  # logit KD: its two terms (and the feature term when feature KD is on)
    kd: float | None = None
    feat: float | None = None
    lr: float | None = None
    grad_norm: float | None = None
    tokens: int
    elapsed_s: float


class Heldout(BaseModel):
    """Cross-entropy of the student, of the teacher, and KL(teacher || student) at T=1 on held-out windows."""

    model_config = ConfigDict(extra="forbid")

    ce: float
    kl_to_teacher: float
    teacher_ce: float
    tokens: int


class MemoryUsed(Sparse):
    """What the run held, read from the objects that ran (the plan estimates it: training_memory.py)."""

    weights_dtype: str
    optimizer: str
    optimizer_class: str
    gradient_checkpointing: bool
    teacher_offloaded: bool
    peak_gpu_gib: float | None = None  # on a GPU only


class TeacherCacheInfo(Sparse):
    path: str
    hit: bool
    build_s: float
    bytes: int | None = None  # when this run built it


class FeatureKD(BaseModel):
    model_config = ConfigDict(extra="forbid")

    weight: float
    layers: dict[int, int]  # student layer -> teacher layer
    projection: list[str] | str  # the student layers projected to the teacher's width, or why none


class GenerationsUsed(BaseModel):
    """The teacher generations an sft / gkd run trained on."""

    model_config = ConfigDict(extra="forbid")

    path: str
    n: int
    tokens: int


class KDTraining(Sparse):
    """What the logit-KD loop did (harness/distill/kd_train.py)."""

    loss_curve: list[CurvePoint]
    steps: int
    compute: str
    memory: MemoryUsed
    feature_kd: FeatureKD | None
    tokens_seen: int
    train_s: float
    tokens_per_s: float | None
    stopped_by: str
    teacher_cache: TeacherCacheInfo | None
    heldout_before: Heldout
    heldout_after: Heldout
    loss: str


class TRLTraining(Sparse):
    """What a TRL trainer did (harness/distill/trl_train.py)."""

    loss_curve: list[CurvePoint]
    steps: int
    tokens_seen: int
    train_s: float
    tokens_per_s: float | None
    stopped_by: str
    loss: str
    memory: MemoryUsed
    compute: str
    generations: GenerationsUsed
    on_policy_tokens: int | float
    heldout_before: Heldout
    heldout_after: Heldout

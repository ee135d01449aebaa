"""Sequence-level KD (TRL SFTTrainer on the teacher's answers) and on-policy GKD (TRL's GKDTrainer), in the
training environment (torch, transformers, TRL). Run by harness/distill/distill_worker.py after the student
is derived; what it shares with our own loop (the device, the held-out pass, the memory record) comes from
harness/distill/train_common.py.

Both train on the teacher generations the orchestrator collected from the served teacher (a JSONL of
prompt / completion). Budgets map to TRL: max_steps directly; max_tokens and max_minutes through a
callback that stops the trainer (tokens counted without padding).
"""

from __future__ import annotations

import json
import tempfile
import time
from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback

from harness.distill.train_common import BF16, DEVICE, heldout, memory_record, offload
from harness.distill.train_io import CurvePoint, GenerationsUsed, TRLTraining
from harness.proc import WorkerProgress

if TYPE_CHECKING:
    from harness.spec.students import GKDStudent, SFTStudent


class Budget(TrainerCallback):
    def __init__(self, spec: SFTStudent | GKDStudent) -> None:
        self.max_tokens = spec.max_tokens
        self.max_s = spec.max_minutes * 60 if spec.max_minutes else None
        self.t0 = time.monotonic()
        self.stopped_by: str | None = None
        self.curve: list[CurvePoint] = []
        self.max_steps = spec.max_steps
        self.report = WorkerProgress("training", "steps", total=self.max_steps)

    def on_step_end(self, args, state, control, **kw):
        if self.max_tokens and state.num_input_tokens_seen >= self.max_tokens:
            self.stopped_by, control.should_training_stop = "max_tokens", True
        elif self.max_s and time.monotonic() - self.t0 >= self.max_s:
            self.stopped_by, control.should_training_stop = "max_minutes", True
        return control

    def on_log(self, args, state, control, logs=None, **kw):
        if logs and "loss" in logs:
            row = CurvePoint(
                step=state.global_step,
                loss=round(float(logs["loss"]), 5),
                lr=logs.get("learning_rate"),
                grad_norm=logs.get("grad_norm"),
                tokens=int(state.num_input_tokens_seen),
                elapsed_s=round(time.monotonic() - self.t0, 2),
            )
            self.curve.append(row)
            print(json.dumps(row.model_dump(mode="json")), flush=True)
            self.report.update(state.global_step, loss=row.loss, eta_s=self._eta(state))

    def _eta(self, state) -> float | None:
        """Without max_steps (the trainer's is a placeholder 10**6) the binding budget gives the ETA:
        tokens at the current token rate, or the time left."""
        if self.max_steps:
            return None
        el = time.monotonic() - self.t0
        left = []
        if self.max_tokens and state.num_input_tokens_seen and el > 0:
            left.append((self.max_tokens - state.num_input_tokens_seen) / (state.num_input_tokens_seen / el))
        if self.max_s:
            left.append(self.max_s - el)
        return round(max(0.0, min(left)), 1) if left else None


def _rows(path: str) -> list[dict[str, Any]]:
    with open(path) as f:
        return [json.loads(line) for line in f]


def train_trl(spec: SFTStudent | GKDStudent, generations: str, student, teacher, tokenizer, held) -> TRLTraining:
    # TRL wants an output folder even with saving off; the student is saved by the caller
    with tempfile.TemporaryDirectory(prefix="dq-trl-") as out:
        return _train(spec, generations, student, teacher, tokenizer, held, out)


def _train(
    spec: SFTStudent | GKDStudent, generations: str, student, teacher, tokenizer, held, output_dir: str
) -> TRLTraining:
    from datasets import Dataset

    from harness.spec.students import GKDStudent

    gens = _rows(generations)
    # the spec's memory levers (harness/distill/training_memory.py estimates them): torchao's AdamW8bit, with
    # stochastic rounding onto bf16 weights; gradient checkpointing (non-reentrant)
    memory_args: dict[str, Any] = {}
    if spec.optimizer == "adamw_8bit":
        memory_args["optim"] = "adamw_torch_8bit"
        if spec.weights_dtype == "bf16":
            memory_args["optim_args"] = "bf16_stochastic_round=True"
    if spec.gradient_checkpointing:
        memory_args |= {"gradient_checkpointing": True, "gradient_checkpointing_kwargs": {"use_reentrant": False}}
    common = dict(
        output_dir=output_dir,
        max_steps=spec.max_steps or 10**6,
        per_device_train_batch_size=spec.batch_size,
        learning_rate=spec.learning_rate,
        warmup_steps=spec.warmup_steps,
        lr_scheduler_type="cosine",
        weight_decay=spec.weight_decay,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=spec.seed,
        max_length=spec.seq_len,
        dataloader_num_workers=0,
        disable_tqdm=True,
        include_num_input_tokens_seen="non_padding",
        bf16=BF16,  # bf16 where computed natively
        use_cpu=student.device.type == "cpu",
        **memory_args,
    )
    budget = Budget(spec)
    before = heldout(student, teacher, held)
    t0 = time.monotonic()
    if not isinstance(spec, GKDStudent):
        from trl import SFTConfig, SFTTrainer

        ds = Dataset.from_list(
            [
                {
                    "prompt": [{"role": "user", "content": g["prompt"]}],
                    "completion": [{"role": "assistant", "content": g["completion"]}],
                }
                for g in gens
            ]
        )
        # prompt-completion data: the loss covers the teacher's answer only (completion_only_loss)
        trainer = SFTTrainer(
            model=student, args=SFTConfig(**common), train_dataset=ds, processing_class=tokenizer, callbacks=[budget]
        )
        loss = "cross-entropy on the teacher's answers (sequence-level KD), prompt tokens masked"
    else:
        from trl.experimental.gkd import GKDConfig, GKDTrainer

        ds = Dataset.from_list(
            [
                {
                    "messages": [
                        {"role": "user", "content": g["prompt"]},
                        {"role": "assistant", "content": g["completion"]},
                    ]
                }
                for g in gens
            ]
        )
        args = GKDConfig(
            **common,
            lmbda=spec.lmbda,
            beta=spec.beta,
            temperature=spec.temperature,
            max_new_tokens=spec.on_policy_max_new_tokens,
        )
        trainer = GKDTrainer(
            model=student,
            teacher_model=teacher,
            args=args,
            train_dataset=ds,
            processing_class=tokenizer,
            callbacks=[budget],
        )
        loss = (
            f"generalized JSD(beta={spec.beta}) at T={spec.temperature} on the student's own samples "
            f"with probability lmbda={spec.lmbda}, else on the teacher's answers"
        )
    # sft trains on text alone: on a GPU the teacher waits in host RAM until the held-out pass
    teacher_off = DEVICE == "cuda" and spec.kind == "sft"
    if teacher_off:
        offload(teacher, "cpu")
    trainer.train()
    train_s = time.monotonic() - t0
    # the Trainer wraps its optimizer (accelerate's AcceleratedOptimizer): record the one that ran
    optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)
    memory = memory_record(spec.weights_dtype, spec.optimizer, teacher_off, optimizer, student)
    # the optimizer states and gradients are not needed for the held-out pass: free them first
    student.zero_grad(set_to_none=True)
    trainer.accelerator.free_memory()
    trainer.optimizer = trainer.lr_scheduler = None
    if teacher_off:
        offload(teacher, DEVICE)
    state = trainer.state
    tokens = int(state.num_input_tokens_seen)
    gen_tokens = sum(g.get("prompt_tokens", 0) + g.get("completion_tokens", 0) for g in gens)
    return TRLTraining(
        loss_curve=budget.curve,
        steps=state.global_step,
        tokens_seen=tokens,
        train_s=round(train_s, 2),
        tokens_per_s=round(tokens / train_s, 1) if train_s else None,
        stopped_by=budget.stopped_by or "max_steps",
        loss=loss,
        memory=memory,
        compute="TRL Trainer, "
        + (
            "bf16 weights"
            if spec.weights_dtype == "bf16"
            else "bf16 autocast"
            if BF16
            else "fp32 (bf16 is emulated on this CPU)"
        ),
        generations=GenerationsUsed(path=generations, n=len(gens), tokens=gen_tokens),
        on_policy_tokens=spec.lmbda * state.global_step * spec.batch_size * spec.on_policy_max_new_tokens
        if isinstance(spec, GKDStudent)
        else 0,
        heldout_before=before,
        heldout_after=heldout(student, teacher, held),
    )

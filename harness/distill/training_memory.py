"""Training memory of a student before anything is loaded: what the training worker holds on the training
device (harness/distill/distill_worker.py: our logit-KD loop in kd_train.py, TRL's trainers in trl_train.py),
part by part (pure arithmetic on config facts; no backend).

The worker runs two phases, and the estimate is the larger:
- the teacher pass (before and after training): student and teacher weights, the teacher's top-k cache
  pass over 4 windows and the held-out pass over 2 windows (student and teacher logits, their fp32 log-
  softmaxes): at most TEACHER_PASS_BYTES per window position and vocabulary entry;
- a training step: student weights + gradients (the weights' dtype) + optimizer states (torch AdamW keeps
  two moments in the weights' dtype; torchao's AdamW8bit two int8 moments + one fp32 scale per block of
  256) + activations of the decoder layers at batch_size x seq_len tokens (all of them, or with gradient
  checkpointing each layer's input plus one layer recomputed) + the loss over [tokens, vocabulary] logits
  + the teacher when it stays on the device.
With fp32 weights under bf16 autocast (a GPU, or a CPU with native bf16) autocast keeps a bf16 copy of
every weight a forward pass uses until the backward pass (2 bytes per parameter): the student's in a step,
the teacher's whenever it runs.

Where a figure comes from (bytes; h hidden, q = heads x head_dim, kv = kv_heads x head_dim, I intermediate):
- a decoder layer keeps, per token, 34h + 6q + 8kv + 8I with fp32 weights under bf16 autocast (the fp32
  residual and the RMSNorms' fp32 tensors, each linear's bf16 input cast, q/k/v before and after RoPE,
  the attention output, the MLP's gate, up, SiLU and product), 16h + 6q + 8kv + 8I with bf16 weights,
  24h + 12q + 16kv + 16I in plain fp32: counted tensor by tensor, an upper bound. Measured on CPU (peak
  RSS after the forward pass, 6 layers minus 2; torch 2.13, transformers 5.17; a Llama layer with h 512,
  I 1792, 4:1 GQA): 32.2 kB per token with fp32 weights under autocast (count 35.8; autocast's weight
  copies, 1.7 kB per token there, counted apart), 19.0 kB with bf16 weights (count 26.6).
- loss over the logits, peak live bytes per [token, vocabulary] element in forward + backward, measured on
  CPU (peak RSS of harness/distill/loss.py's kd_loss on bf16 logits [1, 1024, 49152]): cross-entropy 8.2,
  KL to the cached top-k + CE 12.3, KL to full teacher logits + CE 20.2 + the teacher's bf16 logits 2,
  TRL's generalized JSD (gkd) 30.7 + the teacher's logits 2.
GPU kernels (flash attention, fused cross-entropy) may keep less, the caching allocator's fragmentation
more: it is an estimate, and `basis` says how each number was reached.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.distill.budget import CORPUS_TOKENS, planned_steps
from harness.models.arch import ArchInfo

GiB = 2**30
# loss bytes per [token, vocabulary] element (measured on CPU, see the module docstring)
LOSS_BYTES = {"ce": 8.2, "topk": 12.3, "full": 22.2, "gkd": 32.7}
TEACHER_PASS_BYTES = 56  # per window position x vocabulary entry: 2 held-out windows x 28 (> 4 cache windows x 10)
OPTIM_8BIT_BYTES = 2 * (1 + 4 / 256)  # two int8 moments + an fp32 scale per block of 256 (torchao AdamW8bit)
RUNTIME_GIB = {"cuda": 1.0, "cpu": 1.0}  # CUDA context and allocator slack / the torch process itself
RUNTIME_NOTE = {"cuda": "CUDA context + allocator slack", "cpu": "the Python/torch process"}


@dataclass(frozen=True)
class TrainMemory:
    """The estimate by part, in GiB; `total` is the larger of a training step and the teacher pass."""

    weights: float
    gradients: float
    optimizer: float
    activations: float
    logits: float
    teacher: float
    step: float
    teacher_pass: float
    overhead: float
    total: float
    basis: str


def layer_bytes(arch: ArchInfo, weights: str, autocast: bool) -> float:
    """Activation bytes one decoder layer keeps per token for the backward pass."""
    h, q = arch.hidden_size, arch.num_heads * arch.head_dim
    kv, i = arch.num_kv_heads * arch.head_dim, arch.intermediate_size
    if weights == "bf16":
        return 16 * h + 6 * q + 8 * kv + 8 * i
    if autocast:
        return 34 * h + 6 * q + 8 * kv + 8 * i
    return 24 * h + 12 * q + 16 * kv + 16 * i


def loss_kind(spec) -> str:
    """Which loss the worker runs over the logits (and so whether the teacher runs every step)."""
    if spec.kind == "sft":
        return "ce"
    if spec.kind == "gkd":
        return "gkd"
    if spec.alpha == 0:
        return "ce"
    return "topk" if spec.top_k > 0 and (spec.max_steps or spec.max_tokens) else "full"


def teacher_offloaded(spec, device: str) -> bool:
    """Whether the worker moves the teacher off the GPU while the student trains: the loop never calls it
    (cached top-k logits or the CE control, no feature KD; sft trains on text)."""
    if device != "cuda":
        return False
    if spec.kind == "sft":
        return True
    return spec.kind == "logit_kd" and loss_kind(spec) in ("topk", "ce") and not spec.feature_weight


def estimate_training(spec, teacher: ArchInfo, student: ArchInfo, device: str, bf16_native: bool) -> TrainMemory:
    """Peak memory of training `spec` (a trained student's spec) on `device`. bf16_native: whether the
    worker computes under bf16 autocast there (a GPU, or a CPU with AVX512-BF16/AMX)."""
    n_s, n_t = student.params, teacher.params
    wdt = spec.weights_dtype
    wb = 2 if wdt == "bf16" else 4
    autocast = wdt == "fp32" and (device == "cuda" or bf16_native)
    tokens = spec.batch_size * spec.seq_len
    vocab = student.vocab_size
    kind = loss_kind(spec)
    teacher_runs = kind in ("full", "gkd") or (spec.kind == "logit_kd" and bool(spec.feature_weight))

    weights = n_s * wb
    grads = n_s * wb
    if spec.optimizer == "adamw_8bit":
        optim, optim_note = n_s * OPTIM_8BIT_BYTES, f"AdamW8bit {OPTIM_8BIT_BYTES:.2f} B/param"
    else:
        optim, optim_note = n_s * 2 * wb, f"AdamW 2 x {wb} B/param"
    per_layer = layer_bytes(student, wdt, autocast)
    r = 2 if wdt == "bf16" else 4  # bytes of the residual stream
    outside = (3 * r + 2) * student.hidden_size  # embeddings, final norm, the LM head's input
    if spec.gradient_checkpointing:
        # each layer's input is kept; backward recomputes one layer and holds its gradients alongside
        act = tokens * (student.num_layers * r * student.hidden_size + 2 * per_layer + outside)
        act_note = (
            f"checkpointed: {student.num_layers} layer inputs x {r * student.hidden_size} B + 2 x one layer "
            f"{per_layer / 1e3:.1f} kB, per token"
        )
    else:
        act = tokens * (student.num_layers * per_layer + per_layer + outside)
        act_note = f"{student.num_layers} layers x {per_layer / 1e3:.1f} kB per token (+ one in backward)"
    copies = 2 * n_s if autocast else 0
    if copies:
        act_note += f" + autocast's bf16 weight copies {copies / GiB:.2f} GiB"
    act += copies
    logits = tokens * vocab * LOSS_BYTES[kind]
    offloaded = teacher_offloaded(spec, device)
    teacher_w = 0.0 if offloaded else n_t * wb
    teacher_copies = 2 * n_t if autocast and teacher_runs else 0
    feat = 0.0
    if spec.kind == "logit_kd" and spec.feature_weight:
        # the teacher's mapped layer outputs (taps) and its own logits, every step
        feat = tokens * (student.num_layers * r * teacher.hidden_size + 2 * vocab)
    topk_batch = tokens * (spec.top_k * 8 + 4) if kind == "topk" else 0
    overhead = RUNTIME_GIB[device] * GiB
    step = weights + grads + optim + act + logits + teacher_w + teacher_copies + feat + topk_batch + overhead
    pass_copies = 2 * (n_s + n_t) if autocast else 0
    teacher_pass = n_s * wb + n_t * wb + pass_copies + TEACHER_PASS_BYTES * spec.seq_len * vocab + overhead
    host_cache = 0.0
    if kind == "topk" and device == "cpu":  # the cache lives in the process's RAM on a CPU host
        host_cache = cache_bytes(spec, student)
        step += host_cache
    total = max(step, teacher_pass)

    def g(x: float) -> float:
        return round(x / GiB, 2)

    t_note = (
        "teacher moved off the GPU while the student trains (the loop never calls it)"
        if offloaded
        else f"teacher {n_t / 1e9:.2f}B params x {wb} B resident"
        + (f" + its autocast bf16 copies {g(teacher_copies)} GiB (it runs every step)" if teacher_copies else "")
    )
    basis = (
        f"student {n_s / 1e9:.2f}B params, {wdt} weights{' under bf16 autocast' if autocast else ''}: "
        f"weights {g(weights)} + gradients {g(grads)} + optimizer {g(optim)} ({optim_note}) + activations "
        f"{g(act)} ({tokens} tokens/step = {spec.batch_size} x {spec.seq_len}; {act_note}) + loss logits "
        f"{g(logits)} ({tokens} x {vocab} x {LOSS_BYTES[kind]} B, {kind}) + teacher {g(teacher_w + teacher_copies)} "
        f"({t_note})"
        + (f" + feature taps {g(feat)}" if feat else "")
        + (f" + top-k cache in RAM {g(host_cache)}" if host_cache else "")
        + f" + overhead {g(overhead)} ({RUNTIME_NOTE[device]}) = {g(step)} GiB per step; teacher pass "
        f"(top-k cache, held-out CE/KL) {g(teacher_pass)} GiB" + (" (peak)" if teacher_pass > step else "")
    )
    return TrainMemory(
        weights=g(weights),
        gradients=g(grads),
        optimizer=g(optim),
        activations=g(act),
        logits=g(logits),
        teacher=g(teacher_w + teacher_copies),
        step=g(step),
        teacher_pass=g(teacher_pass),
        overhead=g(overhead),
        total=g(total),
        basis=basis,
    )


def cache_bytes(spec, student: ArchInfo) -> float:
    """The teacher's top-k cache for the windows a run trains on: k fp32 values + k int32 ids + an fp32
    logsumexp per position (harness/distill/loss.py's teacher_topk)."""
    steps = planned_steps(spec)
    windows = CORPUS_TOKENS // spec.seq_len
    if steps:
        windows = min(windows, steps * spec.batch_size)
    return windows * spec.seq_len * (spec.top_k * 8 + 4)

"""The training-memory estimate (harness/distill/training_memory.py) and the epoch count of a budget
(harness/distill/data.py), against figures worked out by hand for Llama-3.1-8B and its half-depth student."""

import pytest
from pydantic import TypeAdapter

from harness.distill.data import epoch_warning, passes
from harness.distill.training_memory import estimate_training, layer_bytes
from harness.models.arch import arch_from_config, known_arch
from harness.spec.students import DistillSpec

GiB = 2**30
TEACHER = known_arch("meta-llama/Llama-3.1-8B-Instruct")
HALF = TEACHER.pruned(2)  # 16 of 32 layers
# embeddings and LM head 2 x 128256 x 4096 = 1,050,673,152; a layer: q,o 2 x 4096^2 + k,v 2 x 4096 x 1024
# + gate,up,down 3 x 4096 x 14336 + two norms 8192 = 218,112,000; + the final norm 4096
N_T = 1_050_673_152 + 32 * 218_112_000 + 4096  # 8,030,261,248
N_S = 1_050_673_152 + 16 * 218_112_000 + 4096  # 4,540,469,248


def student(**kw):
    base = {"name": "s", "kind": "logit_kd", "student": {"kind": "prune", "keep_every": 2}, "max_steps": 150}
    return TypeAdapter(DistillSpec).validate_python({**base, **kw})


KD_HALF = dict(batch_size=4, seq_len=2048, weights_dtype="bf16", optimizer="adamw_8bit", gradient_checkpointing=True)


def test_parameter_counts():
    assert TEACHER.params == N_T == 8_030_261_248 and HALF.params == N_S == 4_540_469_248


def test_half_depth_student_in_bf16_with_8bit_adamw_and_checkpointing_fits_80_gb():
    m = estimate_training(student(**KD_HALF), TEACHER, HALF, "cuda", bf16_native=True)
    assert m.weights == m.gradients == round(2 * N_S / GiB, 2) == 8.46  # bf16: 2 B/param each
    assert m.optimizer == round(N_S * 2 * (1 + 4 / 256) / GiB, 2) == 8.59  # 2 int8 moments + fp32 scale / 256
    # bf16 layer: 16h + 6q + 8kv + 8I = 65,536 + 24,576 + 8,192 + 114,688 = 212,992 B per token;
    # checkpointed: 16 layer inputs x 2 x 4096 + 2 layers' worth + (3 x 2 + 2) x 4096 outside the layers
    assert layer_bytes(HALF, "bf16", autocast=False) == 212_992
    assert m.activations == round(8192 * (16 * 8192 + 2 * 212_992 + 8 * 4096) / GiB, 2) == 4.5
    assert m.logits == round(8192 * 128_256 * 12.3 / GiB, 2) == 12.04  # KL to the cached top-k + CE
    assert m.teacher == 0.0  # cached top-k: the teacher leaves the GPU while the student trains
    topk_batch = 8192 * (64 * 8 + 4)
    step = 2 * 2 * N_S + N_S * 2 * (1 + 4 / 256) + 8192 * 589_824 + 8192 * 128_256 * 12.3 + topk_batch + GiB
    assert m.step == round(step / GiB, 2) == 43.04
    # before/after training: both models in bf16 and the held-out pass (56 B x 2048 x 128256)
    assert m.teacher_pass == round((2 * N_S + 2 * N_T + 56 * 2048 * 128_256 + GiB) / GiB, 2) == 38.11
    assert m.total == 43.04 and "AdamW8bit" in m.basis and "teacher moved off the GPU" in m.basis


def test_the_old_kd_4l_recipe_needs_far_more_than_one_gpu():
    """fp32 master weights, AdamW, no checkpointing, 16 x 2048 tokens a step: llama8b.yaml's kd-4l."""
    m = estimate_training(student(batch_size=16, seq_len=2048, max_steps=2000), TEACHER, HALF, "cuda", True)
    assert (m.weights, m.gradients, m.optimizer) == (16.91, 16.91, 33.83)  # 4 + 4 + 2 x 4 B per parameter
    # fp32 under autocast: 34h + 6q + 8kv + 8I = 286,720 B per layer and token, 17 layers' worth, plus the
    # 14h outside the layers, plus autocast's bf16 copy of every weight (2 B/param)
    assert layer_bytes(HALF, "fp32", autocast=True) == 286_720
    assert m.activations == round((32768 * (17 * 286_720 + 14 * 4096) + 2 * N_S) / GiB, 2) == 158.96
    assert m.logits == round(32768 * 128_256 * 12.3 / GiB, 2) == 48.14
    assert m.total == m.step == 275.77 > 80


def test_a_teacher_called_every_step_stays_with_its_autocast_copies():
    # top_k 0: full teacher logits from a live forward each step; fp32 teacher + its bf16 copies
    m = estimate_training(student(batch_size=1, seq_len=512, top_k=0), TEACHER, HALF, "cuda", True)
    assert m.teacher == round((4 * N_T + 2 * N_T) / GiB, 2) == 44.87
    assert m.logits == round(512 * 128_256 * 22.2 / GiB, 2) and "22.2 B, full" in m.basis
    levers = {"weights_dtype": "bf16", "optimizer": "adamw_8bit"}
    gkd = estimate_training(student(kind="gkd", batch_size=1, seq_len=512, **levers), TEACHER, HALF, "cuda", True)
    assert gkd.teacher == round(2 * N_T / GiB, 2) and "32.7 B, gkd" in gkd.basis  # bf16: no copies


def test_on_cpu_the_teacher_stays_and_the_top_k_cache_counts():
    small = arch_from_config(
        {
            "hidden_size": 576,
            "intermediate_size": 1536,
            "num_hidden_layers": 30,
            "num_attention_heads": 9,
            "num_key_value_heads": 3,
            "head_dim": 64,
            "vocab_size": 49152,
            "tie_word_embeddings": True,
        }
    )
    s = student(batch_size=4, seq_len=256, max_steps=40)
    m = estimate_training(s, small, small.pruned(2), "cpu", bf16_native=False)  # an AVX2 host: plain fp32
    assert m.teacher == round(4 * small.params / GiB, 2) and "resident" in m.basis
    # 40 x 4 = 160 windows of the 460,668 // 256 = 1799: 160 x 256 x (64 x 8 + 4) B
    assert "top-k cache in RAM 0.02" in m.basis and "autocast" not in m.basis


def test_bf16_weights_need_the_8bit_optimizer():
    with pytest.raises(ValueError, match="weights_dtype bf16 needs optimizer adamw_8bit"):
        student(weights_dtype="bf16")


def test_epochs_over_the_training_text():
    # 460,668 // 2048 = 224 windows, 8 held out: 216; 2000 x 16 / 216 = 148.1 passes
    old = student(name="kd-4l", batch_size=16, seq_len=2048, max_steps=2000)
    assert passes(old)[0] == pytest.approx(32000 / 216)
    w = epoch_warning(old)
    assert w.startswith("students[kd-4l]: 2000 steps x 16 x 2048 = 65,536,000 tokens go over the 460,668-token")
    assert "148.1 times (more than 4 epochs)" in w
    assert epoch_warning(student(**KD_HALF)) is None  # 150 x 4 / 216 = 2.8
    # max_tokens bounds it as the worker does: ceil(2e6 / 8192) = 245 steps -> 980 windows = 4.5 passes
    assert passes(student(batch_size=4, seq_len=2048, max_steps=None, max_tokens=2_000_000))[0] == pytest.approx(
        245 * 4 / 216
    )
    assert passes(student(max_steps=None, max_minutes=30)) is None  # time alone: unknown
    sft = student(kind="sft", batch_size=4, max_steps=300, num_prompts=256)
    assert "300 steps x 4 answers go over the teacher's 256 answers (num_prompts) 4.7 times" in epoch_warning(sft)
    assert epoch_warning(sft).endswith("or raise num_prompts")

"""The training-memory levers a student spec names (weights_dtype, optimizer, gradient_checkpointing) are
honoured by the real training stage, in our loop and in TRL's, on the tiny Llama of test_train_stage.py:
the plan's estimate (harness/distill/training_memory.py) counts on them."""

import pytest

from tests.integration.distill.test_train_stage import build, env, load, spec  # noqa: F401 (env: a fixture)

pytestmark = pytest.mark.slow

LEVERS = {"weights_dtype": "bf16", "optimizer": "adamw_8bit", "gradient_checkpointing": True}


def test_logit_kd_trains_with_bf16_weights_8bit_adamw_and_checkpointing(env):
    st = build(env, spec(kind="logit_kd", max_steps=2, top_k=16, learning_rate=1e-3, **LEVERS))
    r = st.record
    assert r["steps"] == 2 and all(c["kd"] > 0 and c["ce"] > 0 for c in r["loss_curve"])
    # CPU: the teacher stays (there is no GPU to leave)
    assert r["memory"] == {**LEVERS, "optimizer_class": "AdamW8bit", "teacher_offloaded": False}
    assert r["compute"] == "cpu, bf16 weights" and r["heldout_after"]["ce"] > 0
    assert load(st.path).config.num_hidden_layers == 2


def test_sft_trains_with_the_same_levers(env):
    st = build(env, spec(kind="sft", max_steps=2, num_prompts=6, **LEVERS), env["gens"])
    r = st.record
    assert r["steps"] == 2 and len(r["loss_curve"]) == 2
    assert r["memory"] == {**LEVERS, "optimizer_class": "AdamW8bit", "teacher_offloaded": False}
    assert r["compute"] == "TRL Trainer, bf16 weights"

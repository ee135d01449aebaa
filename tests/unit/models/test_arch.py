"""Config facts from config.json: multimodal configs (fields under text_config) and configs that lack a
field give facts or one PlanError naming the file and the field, never a KeyError."""

import json

import pytest

from harness.errors import PlanError
from harness.models.arch import arch_from_config, arch_from_dir
from harness.plan import plan_matrix
from harness.spec import parse_matrix

TEXT = {
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "head_dim": 64,
    "vocab_size": 49152,
}
# a Llava/Gemma-3-style config: the language model's fields sit under text_config, the top level holds
# the vision tower's own hidden_size (which must not be taken for the language model's)
MULTIMODAL = {
    "architectures": ["LlavaForConditionalGeneration"],
    "model_type": "llava",
    "hidden_size": 1024,
    "tie_word_embeddings": True,
    "text_config": TEXT,
    "vision_config": {"hidden_size": 1024},
}


def test_text_config_fields_are_read_from_text_config():
    a = arch_from_config(MULTIMODAL)
    assert (a.architecture, a.hidden_size, a.num_layers, a.num_kv_heads, a.head_dim) == (
        "LlavaForConditionalGeneration",
        576,
        30,
        3,
        64,
    )
    assert a.tie_word_embeddings and a.params == arch_from_config({**TEXT, "tie_word_embeddings": True}).params


def test_missing_field_is_a_plan_error_naming_file_and_field(tmp_path):
    cfg = {**MULTIMODAL, "text_config": {k: v for k, v in TEXT.items() if k != "num_hidden_layers"}}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(PlanError) as e:
        arch_from_dir(tmp_path)
    assert str(e.value).startswith(f"{tmp_path / 'config.json'}: no `num_hidden_layers` (nor under text_config)")
    with pytest.raises(PlanError, match=r"c.json: `vocab_size` is 'big'; expected a positive integer"):
        arch_from_config({**TEXT, "vocab_size": "big"}, "c.json")
    (tmp_path / "config.json").write_bytes(b"\xff{")
    with pytest.raises(PlanError, match="not a readable JSON config"):
        arch_from_dir(tmp_path)


def test_planning_a_local_multimodal_checkpoint(tmp_path, base_matrix, settings):
    (tmp_path / "config.json").write_text(json.dumps(MULTIMODAL))
    base_matrix["models"] = [{"name": "mm", "source": {"kind": "local", "path": str(tmp_path)}}]
    plan = plan_matrix(parse_matrix(base_matrix), settings, host="cpu-avx512")
    assert plan.cells and all(c.arch["hidden_size"] == 576 for c in plan.cells)
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["X"], "text_config": {"hidden_size": 8}}))
    with pytest.raises(PlanError, match="no `num_attention_heads` \\(nor under text_config\\)"):
        plan_matrix(parse_matrix(base_matrix), settings, host="cpu-avx512")

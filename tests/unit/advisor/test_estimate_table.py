import json

import pytest

from advisor.cli import main
from advisor.estimate_table import estimate_table, parse_size, resolve_model


@pytest.mark.parametrize("size,expected", [("7B", [28, 14, 7, 3.5]), ("70B", [280, 140, 70, 35])])
def test_reproduces_the_rule_of_thumb_table(size, expected):
    rows = estimate_table(resolve_model(size), ["fp32", "fp16", "int8", "int4"], 4096, 1)
    assert [round(r["weights_gb"], 3) for r in rows] == expected


def test_known_model_includes_kv_cache():
    rows = estimate_table(resolve_model("meta-llama/Llama-3.1-8B-Instruct"), ["bf16"], 8192, 4)
    # 128 KiB per token x 32768 tokens = 4 GiB
    assert rows[0]["kv_gib"] == pytest.approx(4.0)
    assert rows[0]["total_gib"] == pytest.approx(rows[0]["weights_gib"] + 4.0 + 1.5)


def test_config_path_and_bad_inputs(tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text(
        json.dumps(
            {
                "hidden_size": 576,
                "intermediate_size": 1536,
                "num_hidden_layers": 30,
                "num_attention_heads": 9,
                "num_key_value_heads": 3,
                "vocab_size": 49152,
                "tie_word_embeddings": True,
            }
        )
    )
    m = resolve_model(str(tmp_path))
    assert m["params"] == 134_515_008 and m["num_kv_heads"] == 3
    assert parse_size("1.5b") == 1.5e9 and parse_size("abc") is None
    with pytest.raises(ValueError, match="give a size like 7B"):
        resolve_model("no-such-model")
    with pytest.raises(ValueError, match="precision 'int7'"):
        estimate_table(m, ["int7"], 10, 1)


def test_estimate_cli(capsys):
    assert main(["estimate", "7B", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["weights_gb"] for r in out["rows"]] == [28, 14, 7, 3.5]
    assert main(["estimate", "what"]) == 2


def test_known_model_weights_are_counted_by_module():
    """A model known by its config gets the planner's module-wise weights: Llama-3.1-8B int4 keeps its
    embeddings and lm_head 16-bit (~1.96 GiB) and pays one 16-bit scale per 128 weights."""
    from harness.serving_memory import GiB

    model = resolve_model("meta-llama/Llama-3.1-8B-Instruct")
    bf16, int4 = estimate_table(model, ["bf16", "int4"], 4096, 1)
    assert bf16["weights_gib"] == pytest.approx(8_030_261_248 * 2 / GiB)
    assert int4["weights_gib"] == pytest.approx(5.309, abs=1e-3)
    assert int4["weights_gib"] - 8_030_261_248 * 4 / 8 / GiB > 1.5  # the old params x 4 bits
    g64 = estimate_table(model, ["int4"], 4096, 1, group_size=64)[0]
    assert g64["weights_gib"] > int4["weights_gib"]

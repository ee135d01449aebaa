"""harness/evaluate/vllm_lm.py: the in-process engine is built from the server's own flags, read by vLLM's
parser, with the OpenAI server's batch budgets (imports vLLM: slow)."""

import pytest

pytestmark = pytest.mark.slow


def test_the_in_process_engine_gets_the_servers_settings(tmp_path):
    pytest.importorskip("vllm")
    from vllm.engine.arg_utils import EngineArgs
    from vllm.usage.usage_lib import UsageContext

    from harness.evaluate.vllm_lm import engine_kwargs
    from harness.result import Artefact
    from harness.serve.vllm import VLLMServer
    from harness.spec.serving import VLLMServing

    spec = VLLMServing(max_model_len=1024, enforce_eager=True, engine_args={"max_num_seqs": 32})
    # a folder that exists: vLLM's EngineArgs resolves a path it cannot find as a hub id (offline: an error)
    art = Artefact(model=str(tmp_path), dtype="bfloat16", quantization=None, size_bytes=1, bits_per_weight=16)
    kw = engine_kwargs(VLLMServer(spec, "/py", "cpu").engine_flags(art, trust_remote_code=False))
    tokens, _ = EngineArgs.get_batch_defaults(world_size=1)
    want = {
        "model": str(tmp_path),
        "dtype": "bfloat16",
        "max_model_len": 1024,
        "gpu_memory_utilization": 0.3,
        "enforce_eager": True,
        "max_num_seqs": 32,  # the matrix's engine_args entry
        "max_num_batched_tokens": tokens[UsageContext.OPENAI_API_SERVER],  # the server's default, not LLM()'s
    }
    assert {k: kw.get(k) for k in want} == want
    assert "trust_remote_code" not in kw and "port" not in kw

import pytest

from harness.models.arch import known_arch
from harness.plan.memory import effective_bits, estimate_memory
from harness.spec.models import LoadSpec, MethodSpec, VLLMServing

LOAD = LoadSpec(input_tokens=512, output_tokens=128, profiles=[{"kind": "concurrency", "levels": [1, 8]}])


def test_params_from_config_match_published_counts():
    assert known_arch("meta-llama/Llama-3.1-8B-Instruct").params == 8_030_261_248
    assert known_arch("smollm2-135m-instruct").params == 134_515_008


def test_effective_bits_includes_group_scales():
    assert effective_bits("bf16", None) == 16
    assert effective_bits("int4", MethodSpec(kind="gptq", group_size=128)) == pytest.approx(4.125)
    assert effective_bits("int4", MethodSpec(kind="gptq", group_size="channel")) == 4
    assert effective_bits("fp8", MethodSpec(kind="fp8", group_size=128)) == 8


def test_gpu_estimate_adds_weights_kv_and_overhead():
    arch = known_arch("meta-llama/Llama-3.1-8B-Instruct")
    est = estimate_memory(arch, "bf16", None, VLLMServing(max_model_len=8192), LOAD, "cuda")
    # 8.03e9 x 2 bytes; KV: 2 x 32 layers x 8 heads x 128 x 2 bytes = 128 KiB/token x 8192 tokens = 1 GiB
    assert est.weights_gib == pytest.approx(14.957, abs=1e-3)
    assert est.kv_cache_gib == pytest.approx(1.0)
    assert est.total_gib == pytest.approx(14.957 + 1.0 + 1.5, abs=1e-3)


def test_cpu_estimate_uses_the_reserved_kv_space():
    arch = known_arch("smollm2-135m-instruct")
    est = estimate_memory(arch, "bf16", None, VLLMServing(cpu_kvcache_gib=2), LOAD, "cpu")
    assert est.kv_cache_gib == 2 and est.weights_gib == pytest.approx(0.2506, abs=1e-3)

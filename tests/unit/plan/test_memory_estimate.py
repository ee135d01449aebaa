"""The shared memory model (harness/serving_memory.py) as the plan applies it (harness/plan/memory_estimate.py)."""

import pytest

from harness.models.arch import known_arch
from harness.plan.memory_estimate import estimate_memory, kv_dtypes, quant_for
from harness.serving_memory import (
    DEFAULT_OVERHEAD_GIB,
    GiB,
    Quant,
    gguf_tensor_type,
    kv_bytes_per_token,
    modules,
    weights,
)
from harness.spec.loadtest import LoadSpec
from harness.spec.methods import MethodSpec
from harness.spec.serving import LlamaCppServing, VLLMServing

LOAD = LoadSpec(input_tokens=512, output_tokens=128, profiles=[{"kind": "concurrency", "levels": [1, 8]}])
LLAMA8B = "meta-llama/Llama-3.1-8B-Instruct"


def test_params_from_config_match_published_counts():
    assert known_arch(LLAMA8B).params == 8_030_261_248
    assert known_arch("smollm2-135m-instruct").params == 134_515_008


def test_modules_and_norms_add_up_to_the_parameter_count():
    for name in (LLAMA8B, "smollm2-135m-instruct"):
        a = known_arch(name)
        norms = (2 * a.num_layers + 1) * a.hidden_size
        assert sum(m.params for m in modules(a)) + norms == a.params
    # tied: the embedding matrix is the head, counted once
    assert [m.kind for m in modules(known_arch("smollm2-135m-instruct"))].count("head") == 0


def test_llama8b_w4a16_g128_keeps_embeddings_and_lm_head_16bit():
    """Llama-3.1-8B W4A16 g128 (GPTQ, llm-compressor's default ignore=[lm_head]), from first principles."""
    vocab, h, inter, layers, kv_heads, head_dim = 128256, 4096, 14336, 32, 8, 128
    embed_head = 2 * vocab * h * 2  # untied: embeddings + lm_head, 2 bytes each
    per_layer = h * h * 2 + h * kv_heads * head_dim * 2 + 3 * h * inter  # q, o + k, v + gate, up, down
    linears = layers * per_layer * (4 + 16 / 128) / 8  # 4 bits + one 16-bit scale per 128 weights
    norms = (2 * layers + 1) * h * 2
    expected = (embed_head + linears + norms) / GiB
    assert embed_head / GiB == pytest.approx(1.957, abs=1e-3)
    assert expected == pytest.approx(5.309, abs=1e-3)  # 5.70 GB: the published GPTQ-INT4 checkpoints' size

    est = estimate_memory(
        known_arch(LLAMA8B),
        "int4",
        MethodSpec(kind="gptq", group_size=128),
        VLLMServing(max_model_len=8192),
        LOAD,
        "cuda",
    )
    assert est.weights_gib == pytest.approx(expected, abs=1e-3)
    # the old models: params x 4.125 bits (plan) and params x 4 bits (advisor), both ~1.5 GiB low
    assert est.weights_gib - 8_030_261_248 * 4.125 / 8 / GiB > 1.4
    assert est.bits_per_weight == pytest.approx(expected * GiB * 8 / 8_030_261_248, abs=1e-3)
    assert "embeddings + lm_head at 16.00 bits" in est.basis and "4.125 bits" in est.basis


def test_lm_head_is_quantized_when_ignore_leaves_it_out_and_mixed_layers_stay_16bit():
    a = known_arch(LLAMA8B)
    default = weights(a, Quant(bits=4, group_size=128))
    head_too = weights(a, Quant(bits=4, group_size=128, ignore=()))
    head = 128256 * 4096
    assert default.bytes - head_too.bytes == pytest.approx(head * (16 - 4.125) / 8)
    mixed = weights(a, Quant(bits=4, group_size=128, ignore=("lm_head", r"re:model\.layers\.(0|31)\.")))
    per_layer = a.num_heads * a.head_dim * a.hidden_size * 2 + a.hidden_size * 1024 * 2 + 3 * a.hidden_size * 14336
    assert mixed.bytes - default.bytes == pytest.approx(2 * per_layer * (16 - 4.125) / 8)


def test_asymmetric_and_per_channel_scales():
    a = known_arch(LLAMA8B)
    sym = weights(a, Quant(bits=4, group_size=128)).layer_bytes
    asym = weights(a, Quant(bits=4, group_size=128, symmetric=False)).layer_bytes
    linear_params = sum(m.params for m in modules(a) if m.kind not in ("embed", "head"))
    assert asym - sym == pytest.approx(linear_params * 8 / 128 / 8)  # an int8 zero point per group
    chan = weights(a, Quant(bits=8)).layer_bytes  # W8A8 / FP8: one 16-bit scale per output row
    rows = sum(m.out_features for m in modules(a) if m.kind not in ("embed", "head"))
    assert chan == pytest.approx(linear_params + rows * 2)


def test_quant_for_reads_the_method_and_its_plugin():
    assert quant_for("bf16", None, VLLMServing()).uncompressed
    awq = quant_for("int4", MethodSpec(kind="awq", group_size=128), VLLMServing())
    assert not awq.symmetric and awq.group_size == 128 and awq.ignore == ("lm_head",)
    assert quant_for("int4", MethodSpec(kind="gptq", group_size=128), VLLMServing()).symmetric
    assert quant_for("fp8", MethodSpec(kind="rtn"), VLLMServing()).group_size == "channel"
    assert quant_for("int4", MethodSpec(kind="gguf"), LlamaCppServing()).gguf_type == "Q4_K_M"
    assert quant_for("int4", MethodSpec(kind="gguf", options={"type": "Q4_0"}), LlamaCppServing()).gguf_type == "Q4_0"


def test_gguf_q4_k_m_matches_the_measured_smollm2_file():
    """SmolLM2's rows are 576 wide: k-quants fall back per tensor. The full CPU study measured 6.17 bits per
    weight over the file and 5.53 over the layer matrices (docs/results/2026-11-22-smollm2-cpu-avx512.md),
    with 166 tensors to q5_0 and 14 to q8_0 (docs/methods-and-engines.md)."""
    a = known_arch("smollm2-135m-instruct")
    types = [gguf_tensor_type(m, a, "Q4_K_M") for m in modules(a) if m.kind not in ("embed", "head")]
    assert types.count("Q5_0") == 166 and types.count("Q8_0") == 14
    assert gguf_tensor_type(modules(a)[0], a, "Q4_K_M") == "Q8_0"  # tied token_embd takes the output rule
    est = estimate_memory(a, "int4", MethodSpec(kind="gguf"), LlamaCppServing(), LOAD, "cpu")
    assert est.bits_per_weight == pytest.approx(6.17, abs=0.01)
    w = weights(a, Quant(bits=4, gguf_type="Q4_K_M"))
    linear_params = sum(m.params for m in modules(a) if m.kind not in ("embed", "head"))
    assert w.layer_bytes * 8 / linear_params == pytest.approx(5.53, abs=0.01)


def test_gguf_q4_k_m_llama8b_keeps_output_at_q6_k():
    a = known_arch(LLAMA8B)
    ms = modules(a)
    assert gguf_tensor_type(ms[0], a, "Q4_K_M") == "Q4_K"  # untied token_embd: the file's base type
    assert gguf_tensor_type(ms[-1], a, "Q4_K_M") == "Q6_K"  # output
    # published Llama-3.1-8B-Instruct Q4_K_M files are 4.92 GB
    assert weights(a, Quant(bits=4, gguf_type="Q4_K_M")).bytes / 1e9 == pytest.approx(4.92, abs=0.03)


def test_gpu_estimate_adds_weights_kv_and_overhead():
    arch = known_arch(LLAMA8B)
    est = estimate_memory(arch, "bf16", None, VLLMServing(max_model_len=8192), LOAD, "cuda")
    # 8.03e9 x 2 bytes; KV: 2 x 32 layers x 8 heads x 128 x 2 bytes = 128 KiB/token x 8192 tokens = 1 GiB
    assert est.weights_gib == pytest.approx(14.957, abs=1e-3)
    assert est.kv_cache_gib == pytest.approx(1.0)
    assert est.total_gib == pytest.approx(14.957 + 1.0 + 1.5, abs=1e-3)


def test_kv_cache_by_its_dtype():
    assert kv_bytes_per_token(32, 8, 128, "bf16") == 131072
    assert kv_bytes_per_token(32, 8, 128, "fp8") == 65536
    arch = known_arch(LLAMA8B)
    fp8 = VLLMServing(max_model_len=8192, engine_args={"kv_cache_dtype": "fp8"})
    assert kv_dtypes(fp8, "bf16", "bf16") == ("fp8", "fp8")
    assert estimate_memory(arch, "bf16", None, fp8, LOAD, "cuda").kv_cache_gib == pytest.approx(0.5)
    assert kv_dtypes(VLLMServing(), "int4", "fp32") == ("fp32", "fp32")  # auto: the compute dtype
    q8 = LlamaCppServing(max_model_len=1024, parallel=2, extra_args={"cache-type-k": "q8_0"})
    assert kv_dtypes(q8, "int4", None) == ("q8_0", "f16")
    est = estimate_memory(arch, "int4", MethodSpec(kind="gguf"), q8, LOAD, "cpu")
    assert est.kv_cache_gib == pytest.approx(32 * 8 * 128 * (34 / 32 + 2) * 2048 / GiB, abs=1e-3)


def test_cpu_estimate_uses_the_reserved_kv_space():
    arch = known_arch("smollm2-135m-instruct")
    est = estimate_memory(arch, "bf16", None, VLLMServing(cpu_kvcache_gib=2), LOAD, "cpu")
    assert est.kv_cache_gib == 2 and est.weights_gib == pytest.approx(0.2506, abs=1e-3)
    assert est.overhead_gib == DEFAULT_OVERHEAD_GIB[("vllm", "cpu")][0] and "default" in est.basis

"""Schemes from plans and from names: their storage, compute dtype, kernel and quality families."""

import pytest

from harness.predict.schemes import parse_scheme, scheme_of_plan


def plan(precision, kind="none", engine="vllm", **spec):
    return {
        "precision": precision,
        "method": kind,
        "method_spec": None if kind == "none" else {"kind": kind, **spec},
        "serving": {"kind": engine},
    }


def test_schemes_of_plans():
    ref = scheme_of_plan(plan("bf16"))
    assert ref.uncompressed and ref.kind == "bf16" and ref.compute_dtype(None) == "bf16" and ref.family == "bf16"
    w8 = scheme_of_plan(plan("int8", "smoothquant_gptq"))
    assert w8.kind == "w8a8-int8" and w8.compute_dtype("bf16") == "int8" and w8.bits_class == "8-bit"
    w8a16 = scheme_of_plan(plan("int8", "rtn", options={"activations": 16}))
    assert w8a16.kind == "w8a16" and w8a16.compute_dtype("fp32") == "fp32"
    awq = scheme_of_plan(plan("int4", "awq", group_size=64))
    assert awq.kind == "w4a16" and not awq.quant.symmetric and awq.quant.group_size == 64
    assert awq.kernel == "vllm:w4a16" and awq.family == "w4a16-awq" and awq.compute_dtype("bf16") == "bf16"
    g = scheme_of_plan(plan("int4", "gguf", "llamacpp"))
    assert g.gguf_type == "Q4_K_M" and g.kind == "gguf-Q4_K_M" and g.compute_dtype(None) == "int8"
    assert scheme_of_plan(plan("int8", "gguf", "llamacpp", options={"type": "Q8_0"})).quant.gguf_type == "Q8_0"


def test_schemes_by_name():
    assert parse_scheme("w4a16-gptq-g64").group_size == 64
    assert parse_scheme("gguf-q4_k_m").gguf_type == "Q4_K_M" and parse_scheme("GGUF-Q8_0").precision == "int8"
    assert parse_scheme("fp8").compute_dtype("bf16") == "fp8" and parse_scheme("fp8").quant.group_size == "channel"
    assert parse_scheme("w8a8").method == "smoothquant_gptq"
    with pytest.raises(ValueError, match="unknown: give one of bf16"):
        parse_scheme("w3a7")
    with pytest.raises(ValueError, match="GGUF type Q9_K unknown"):
        parse_scheme("gguf-q9_k")
    with pytest.raises(ValueError, match="applies to w4a16 schemes only"):
        parse_scheme("w8a8-g64")

"""Predictions end to end: a GPU preset with nothing measured (defaults and priors, labelled), this host's
measured cells (fitted, with the error beside them), a measured configuration winning, and the plan's view."""

import pytest

from harness.hw.probe import load_override
from harness.predict.context import (
    PredictContext,
    default_schemes,
    family_name,
    host_view,
    make_context,
    predict_grid,
)
from harness.predict.schemes import parse_scheme
from harness.predict.target import resolve_target
from tests.unit.predict.conftest import results_on


def test_llama_8b_on_an_h100_preset_with_nothing_measured(settings):
    host = host_view("cuda-h100", settings)
    assert host.device == "cuda" and host.figures.source == "datasheet"
    target = resolve_target("meta-llama/Llama-3.1-8B-Instruct")
    schemes = [parse_scheme(s) for s in default_schemes("cuda", "bf16")]
    preds, notes = predict_grid(target, schemes, PredictContext(host, []), 8192, [1, 32], 512, 128, "bf16")
    assert len(preds) == 10 and not notes
    by = {(p.scheme, p.concurrency): p for p in preds}
    bf16 = by[("bf16", 1)]
    assert bf16.weights_gib == pytest.approx(14.96, abs=0.05) and bf16.kv_gib == pytest.approx(1.0)
    assert bf16.limits.decode_regime == "memory-bound"
    # bandwidth roofline of 8B bf16 on 3.35 TB/s: ~210 tok/s; the default efficiency 0.6 of it
    assert bf16.decode_tok_s.value == pytest.approx(0.6 * bf16.limits.decode_tok_s, rel=0.01)
    assert 150 < bf16.limits.decode_tok_s < 230
    for p in preds:
        for e in (p.memory_gib, p.decode_tok_s, p.ttft_ms, p.tpot_ms, p.drop):
            assert e.label == "predicted" and e.lo <= e.value <= e.hi
        assert p.decode_tok_s.source == "default" and p.drop.source == "prior" and p.feasible
    assert by[("w4a16-gptq", 1)].decode_tok_s.value > 2.5 * bf16.decode_tok_s.value  # 4-bit weights stream 3.5x less
    assert by[("fp8", 32)].ttft_ms.value < by[("bf16", 32)].ttft_ms.value  # FP8 tensor cores: twice the peak
    assert "Kurtic" in by[("w8a8", 1)].drop.basis


def test_this_hosts_cells_are_the_evidence_and_a_measured_cell_wins(settings, monkeypatch):
    monkeypatch.setenv("DQBENCH_HOST_CAPS", "cpu-avx512")
    caps = load_override("cpu-avx512")
    results = results_on(caps.host_block())
    host = host_view(None, settings)
    ctx = make_context(host, results)
    assert ctx.cells == 2 and ctx.load_shape() == (128, 64)
    target = resolve_target("smollm2-135m-instruct")
    name = family_name(target, ctx.obs, results)
    assert name == results[0].plan["model"]["name"]
    schemes = [parse_scheme("w8a8-rtn"), parse_scheme("gguf-q4_k_m")]
    preds, _ = predict_grid(target, schemes, ctx, 2048, [1], 128, 64, "bf16", model_name=name)
    w8, gguf = preds
    assert w8.measured_cell == "w8a8cell0001" and w8.memory_gib.label == "measured" and w8.memory_gib.value == 3.8
    assert w8.drop.label == "measured"
    assert gguf.measured_cell is None and gguf.decode_tok_s.label == "predicted"
    assert gguf.decode_tok_s.source == "default" and "nothing of llamacpp measured" in gguf.decode_tok_s.basis
    assert gguf.decode_tok_s.error is None  # no llama.cpp cell here: no measured error to show
    assert gguf.memory_gib.source == "default"  # no llama.cpp cell: its documented overhead
    assert gguf.drop.source == "prior"  # Q4_K_M is 4-bit; this host measured 8-bit only
    other = predict_grid(target, [parse_scheme("w8a8")], ctx, 2048, [1], 128, 64, "bf16", model_name=name)[0][0]
    assert other.measured_cell is None and "vllm:w8a8-int8" in other.decode_tok_s.basis  # same kernel, measured
    assert other.decode_tok_s.error and "cell(s) of this host, vllm" in other.decode_tok_s.error


def test_the_plan_shows_a_prediction_per_cell(settings, monkeypatch, tmp_path):
    from harness.plan import plan_matrix
    from harness.predict.context import plan_predictions
    from harness.spec import load_matrix
    from tests.conftest import MATRICES

    monkeypatch.setenv("DQBENCH_HOST_CAPS", "cuda-h100")
    p = plan_matrix(load_matrix(MATRICES / "llama8b.yaml"), settings, host="cuda-h100")
    preds = plan_predictions(p.cells, settings)
    assert preds and all(x.decode_tok_s is not None and x.memory_gib is not None for x in preds.values())

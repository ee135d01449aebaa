"""The roofline: hand-checked limits, the regime as concurrency grows, the block a result gets, and that
computing it never fails a cell."""

import pytest

from harness.hw.figures import HostFigures
from harness.models.arch import ArchInfo
from harness.predict.cost import kv_bytes, model_cost
from harness.predict.roofline import decode_limit, prefill_limit, roofline_of, with_roofline
from harness.serving_memory import Quant
from tests.unit.predict.conftest import FIGS, SMOL

TINY = ArchInfo("LlamaForCausalLM", 64, 128, 2, 4, 2, 16, 1000, False)


def test_cost_counts_streamed_bytes_and_flops_by_hand():
    c = model_cost(TINY, Quant(bits=16), kv_bytes(TINY, "bf16"))
    layer = 64 * 64 * 2 + 64 * 32 * 2 + 3 * 64 * 128  # q, o + k, v + gate, up, down
    assert c.matmul_flops_per_token == 2 * (2 * layer + 1000 * 64)  # layers + untied head, not the embedding
    assert c.streamed_bytes == pytest.approx(c.weight_bytes - 1000 * 64 * 2)  # the untied table is not streamed
    assert c.kv_bytes_per_token == 2 * 2 * 2 * 16 * 2
    assert c.attn_flops_per_context_token == 4 * 2 * 4 * 16
    tied = model_cost(SMOL, Quant(bits=16), kv_bytes(SMOL, "bf16"))
    assert tied.streamed_bytes == tied.weight_bytes  # a tied table is the LM head: read every step


def test_decode_is_memory_bound_alone_and_compute_bound_in_a_crowd():
    c = model_cost(SMOL, Quant(bits=16), kv_bytes(SMOL, "bf16"))
    one = decode_limit(c, FIGS, "bf16", 144, 1)
    assert one.regime == "memory-bound"
    assert one.bandwidth_tok_s == pytest.approx(10e9 / (c.streamed_bytes + c.kv_bytes_per_token * 144))
    assert one.compute_tok_s == pytest.approx(0.4e12 / c.flops_per_token(144))
    many = decode_limit(c, FIGS, "bf16", 144, 256)
    assert many.regime == "compute-bound" and many.tok_s == many.compute_tok_s
    pre = prefill_limit(c, FIGS, "bf16", 128)
    assert pre.regime == "compute-bound" and pre.compute_tok_s == pytest.approx(0.4e12 / c.flops_per_token(64))
    # int8 W8A8 on a host with fast int8: a higher compute ceiling than bf16
    assert decode_limit(c, FIGS, "int8", 144, 256).compute_tok_s == pytest.approx(2 * many.compute_tok_s)


def test_a_results_roofline_block(v3):
    rf = roofline_of(v3, FIGS)
    assert rf.error is None and rf.compute_dtype == "bf16" and rf.context_tokens == 128 + 32
    assert [(lv.profile, lv.level) for lv in rf.levels] == [("synchronous", 1), ("concurrency", 4), ("concurrency", 16)]
    sync = rf.levels[0]
    assert sync.measured_tok_s == v3.perf.levels[0].output_tok_s
    assert sync.pct_of_limit == pytest.approx(100 * sync.measured_tok_s / sync.limit_tok_s, abs=0.01)
    ttft = v3.perf.levels[0].ttft_ms.p50
    assert rf.prefill_measured_tok_s == pytest.approx(128 * 1000 / ttft, rel=1e-3)
    assert rf.ttft_floor_ms == pytest.approx(1000 * 128 / rf.prefill_limit_tok_s, rel=1e-3)
    assert v3.model_copy(update={"roofline": rf}).model_dump(mode="json")["roofline"]["levels"][0]["regime"]


def test_no_figures_or_no_arch_is_an_error_in_the_block_never_a_failure(v3, settings, monkeypatch):
    assert "harness doctor" in roofline_of(v3, None).error
    no_arch = v3.model_copy(update={"plan": {**v3.plan, "arch": None}})
    assert "architecture" in roofline_of(no_arch, FIGS).error

    def boom(*a, **k):
        raise RuntimeError("worker died")

    monkeypatch.setattr("harness.hw.probe.host_figures", boom)
    r = with_roofline(v3, settings)
    assert r.status == v3.status and "worker died" in r.roofline.error


def test_with_roofline_uses_the_hosts_figures(v3, settings, monkeypatch):
    figs = HostFigures(device="cpu", bandwidth_gb_s=5.0, tflops={"bf16": 0.2})
    monkeypatch.setattr("harness.hw.probe.host_figures", lambda s, measure=True: figs)
    r = with_roofline(v3, settings)
    assert r.roofline.bandwidth_gb_s == 5.0 and r.roofline.levels

"""Speculative decoding for real on llama-server (issue #28): a tiny random Llama as a GGUF, drafting for itself
(the same weights propose what the target would pick, so acceptance is high), through the cell's own path:
the draft flags (harness/serve/speculative.py), the check that the server loaded the draft, and each level's
acceptance read from its /metrics by the load test's probe (harness/measure/acceptance.py)."""

import pytest

from harness.measure.acceptance import AcceptanceProbe
from harness.measure.run import measure
from harness.serve.llamacpp import LlamaCppServer
from harness.serve.speculative import DraftModel, metrics_url
from harness.settings import load_settings
from harness.spec.loadtest import LoadSpec
from harness.spec.serving import LlamaCppServing
from tests.integration.compress.test_llmc_stage import tiny_llama  # noqa: F401 - fixture
from tests.integration.test_loadgen_llamacpp import gguf  # noqa: F401 - fixture

pytestmark = pytest.mark.slow


def test_a_draft_is_loaded_drafts_and_is_counted_per_level(gguf, tmp_path):
    server = LlamaCppServer(LlamaCppServing(max_model_len=512, parallel=2), load_settings().python, "cpu")
    server.draft = DraftModel(name="self", model=gguf.model, tokens=3)
    h = server.start(gguf, "tiny", tmp_path / "server.log")
    try:
        assert h.loaded["draft_loaded"] == gguf.model
        load = LoadSpec(
            input_tokens=16,
            output_tokens=24,
            warmup_requests=1,
            profiles=[{"kind": "synchronous", "requests": 2}, {"kind": "concurrency", "levels": [2], "requests": 2}],
        )
        perf = measure(
            h.base_url,
            "tiny",
            load,
            gguf.tokenizer_src,
            server.request_extras,
            None,
            server.http_keepalive,
            probes=[AcceptanceProbe(metrics_url(h.engine, h.port))],
        )
        assert perf.stopped is None
        for lv in perf.levels:
            spec = lv.speculative
            assert spec is not None and spec.drafts > 0 and spec.draft_tokens >= spec.drafts
            # the same weights draft what the target picks: nearly every drafted token is accepted
            assert spec.acceptance_rate > 0.8, spec
            assert 1.0 < spec.mean_accepted_len <= 4.0
    finally:
        h.stop()

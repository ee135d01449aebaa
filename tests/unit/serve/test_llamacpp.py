"""llama-server's plugin: what its cells' in-process scoring needs is known before the server starts."""

from pathlib import Path
from types import SimpleNamespace

from harness.result import Artefact
from harness.serve.llamacpp import LlamaCppServer
from harness.serve.vllm import VLLMServer
from harness.spec.serving import LlamaCppServing, VLLMServing

GGUF_ART = Artefact(model="/t.gguf", dtype="gguf", quantization="Q4_K_M", size_bytes=1, bits_per_weight=4.8)


def test_the_evaluate_workers_environment_is_known_before_the_start_and_is_the_scorings_own(monkeypatch, tmp_path):
    """A GGUF cell's evaluate worker is started ahead, beside its compress step (harness/cell/steps.py); the
    worker is claimed only when its environment equals the scoring's (harness/worker_ahead.py)."""
    monkeypatch.setattr(
        "harness.serve.llamacpp.load_settings", lambda: SimpleNamespace(llamacpp_dir=Path(tmp_path / "tools"))
    )
    s = LlamaCppServer(LlamaCppServing(), "/py", "cpu")
    before = s.evaluate_env()
    assert before["LLAMA_CPP_LIB_PATH"] == str(tmp_path / "tools" / "build" / "bin")
    assert str(tmp_path / "tools" / "py") in before["PYTHONPATH"].split(":")
    handle = SimpleNamespace(model_name="dq-x", base_url="http://127.0.0.1:8123/v1")
    assert s.scoring(handle, GGUF_ART).env == before
    # without llama.cpp's tools there is nothing to add (the scoring then fails, naming the set-up)
    monkeypatch.setattr("harness.serve.llamacpp.load_settings", lambda: SimpleNamespace(llamacpp_dir=None))
    assert s.evaluate_env() == {} == s.scoring(handle, GGUF_ART).env


def test_a_cell_scored_through_its_vllm_server_adds_nothing_to_the_workers_environment(monkeypatch):
    monkeypatch.delenv("DQBENCH_EVAL_VIA", raising=False)
    s = VLLMServer(VLLMServing(), "/py", "cpu")
    art = Artefact(model="/m", dtype="bfloat16", quantization=None, size_bytes=1, bits_per_weight=16)
    handle = SimpleNamespace(model_name="dq-x", base_url="http://127.0.0.1:8123/v1", command=["vllm"])
    assert s.evaluate_env() == {} == s.scoring(handle, art).env

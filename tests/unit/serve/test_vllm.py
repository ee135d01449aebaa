from pathlib import Path

import pytest

from harness.errors import DQError
from harness.result import Artefact
from harness.serve.vllm import VLLMServer, parse_engine_config
from harness.spec.serving import VLLMServing

LOG = (
    "(EngineCore pid=1) INFO 11-22 07:39:05 [core.py:133] Initializing a V1 LLM engine (v0.32.0) with config: "
    "model='/m', speculative_config=None, tokenizer='/m', dtype=torch.bfloat16, max_seq_len=2048, "
    "quantization=None, quantization_config=None, enforce_eager=True, "
    "aux_output_config=AuxOutputConfig(enable_return_routed_experts=False, max_bytes=None), kv_cache_dtype=auto, "
    "device_config=cpu, seed=0\n"
)


def test_parse_engine_config_reads_the_engine_line():
    cfg = parse_engine_config("noise\n" + LOG + "more noise\n")
    assert cfg["dtype"] == "torch.bfloat16" and cfg["quantization"] == "None"
    assert cfg["max_seq_len"] == "2048" and cfg["device_config"] == "cpu" and cfg["kv_cache_dtype"] == "auto"
    assert parse_engine_config("nothing here") == {}


def test_command_binds_loopback_and_passes_managed_flags(monkeypatch):
    monkeypatch.delenv("DQBENCH_VLLM_CORE_START", raising=False)
    spec = VLLMServing(
        max_model_len=1024,
        enforce_eager=True,
        engine_args={"max_num_seqs": 32, "swap_space": 0, "disable_log_stats": True},
    )
    s = VLLMServer(spec, "/py", "cpu")
    art = Artefact(model="/m", dtype="bfloat16", quantization=None, size_bytes=1, bits_per_weight=16)
    cmd = s.command(art, 8123, "dq-x", trust_remote_code=False)
    assert cmd[:3] == ["/py", "-m", "harness.serve.vllm_start"]  # CPU: the engine core forked
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and cmd[cmd.index("--port") + 1] == "8123"
    assert "--enforce-eager" in cmd and "--trust-remote-code" not in cmd
    assert cmd[cmd.index("--max-num-seqs") + 1] == "32" and "--disable-log-stats" in cmd
    assert s.env()["VLLM_CPU_KVCACHE_SPACE"] == "1"
    # HumanEval's 5 stop strings pass vLLM's request validation (its default limit is 4)
    assert int(s.env()["VLLM_MAX_STOP_STRINGS"]) >= 5
    assert "VLLM_CPU_KVCACHE_SPACE" not in VLLMServer(spec, "/py", "cuda").env()


def test_the_engine_core_is_forked_on_cpu_only_and_spawned_when_asked(monkeypatch):
    art = Artefact(model="/m", dtype="bfloat16", quantization=None, size_bytes=1, bits_per_weight=16)

    def module(device: str) -> str:
        return VLLMServer(VLLMServing(), "/py", device).command(art, 1, "dq-x", trust_remote_code=False)[2]

    monkeypatch.delenv("DQBENCH_VLLM_CORE_START", raising=False)
    assert module("cpu") == "harness.serve.vllm_start"
    # a GPU front end may have initialised CUDA: vLLM chooses its own start method there
    assert module("cuda") == "vllm.entrypoints.openai.api_server"
    monkeypatch.setenv("DQBENCH_VLLM_CORE_START", "spawn")
    assert module("cpu") == "vllm.entrypoints.openai.api_server"
    monkeypatch.setenv("DQBENCH_VLLM_CORE_START", "exec")
    with pytest.raises(DQError, match="DQBENCH_VLLM_CORE_START='exec': one of fork, spawn"):
        module("cpu")


def test_scoring_reads_the_continuation_s_prompt_logprobs_only_unless_told_all(monkeypatch):
    from harness.serve.base import ServerHandle
    from harness.serve.prompt_tail import ENV

    art = Artefact(model="/m", dtype="bfloat16", tokenizer="/tok")
    handle = ServerHandle("vllm", "http://127.0.0.1:1/v1", "dq-x", 1, None, Path("/dev/null"))  # type: ignore[arg-type]
    s = VLLMServer(VLLMServing(), "/py", "cpu")
    monkeypatch.delenv("DQBENCH_PROMPT_LOGPROBS", raising=False)
    sc = s.scoring(handle, art, via="server")
    assert s.env()[ENV] == "1" and sc.model_args["prompt_tail"] is True and "continuation" in sc.how
    monkeypatch.setenv("DQBENCH_PROMPT_LOGPROBS", "all")  # every position, on the server too
    sc = s.scoring(handle, art, via="server")
    assert s.env()[ENV] == "0" and sc.model_args["prompt_tail"] is False and "continuation" not in sc.how
    monkeypatch.setenv("DQBENCH_PROMPT_LOGPROBS", "some")
    with pytest.raises(DQError, match="DQBENCH_PROMPT_LOGPROBS='some': one of tail, all"):
        s.env()


def test_reserved_cores_reach_vllm_and_leave_ids_alone_when_unset():
    from harness.serve.vllm import VLLMServer
    from harness.spec.serving import VLLMServing

    assert "cpu_reserved_cores" not in VLLMServing().model_dump(mode="json")  # unset: ids as before
    assert "VLLM_CPU_NUM_OF_RESERVED_CPU" not in VLLMServer(VLLMServing(), "python", "cpu").env()
    env = VLLMServer(VLLMServing(cpu_reserved_cores=0), "python", "cpu").env()
    assert env["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"
    assert VLLMServing(cpu_reserved_cores=0).model_dump(mode="json")["cpu_reserved_cores"] == 0


def _handle(command=()):
    from types import SimpleNamespace

    return SimpleNamespace(model_name="dq-x", base_url="http://127.0.0.1:8123/v1", command=list(command))


def test_scoring_goes_through_the_server_or_in_process_as_asked(monkeypatch):
    import json

    monkeypatch.delenv("DQBENCH_EVAL_VIA", raising=False)
    spec = VLLMServing(max_model_len=1024, enforce_eager=True, engine_args={"max_num_seqs": 32})
    s = VLLMServer(spec, "/py", "cpu")
    art = Artefact(model="/m", dtype="bfloat16", quantization=None, size_bytes=1, bits_per_weight=16)
    server = s.scoring(_handle(), art)
    assert server.via == "server" and server.model == "dq-local-completions"
    assert server.model_args["logprobs_via"] == "prompt_logprobs"
    inproc = s.scoring(_handle(["--trust-remote-code"]), art, via="in-process")
    assert inproc.via == "in-process" and inproc.model == "dq-vllm"
    flags = json.loads(str(inproc.model_args["engine_flags"]))
    # the engine the server runs: its own flags, without the HTTP front end's
    cmd = s.command(art, 8123, "dq-x", trust_remote_code=True)
    assert all(f in cmd for f in flags) and "--port" not in flags and "--served-model-name" not in flags
    assert flags[flags.index("--max-num-seqs") + 1] == "32" and "--trust-remote-code" in flags
    assert inproc.env["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0" and inproc.env["VLLM_CPU_KVCACHE_SPACE"] == "1"
    # the shift's logprob dump still asks the server (harness/evaluate/logprobs_worker.py)
    assert inproc.model_args["base_url"] == "http://127.0.0.1:8123/v1/completions"
    monkeypatch.setenv("DQBENCH_EVAL_VIA", "in-process")
    assert s.scoring(_handle(), art).via == "in-process"


def test_an_unknown_eval_via_is_one_clear_error():
    import pytest

    from harness.errors import DQError
    from harness.settings import load_settings

    with pytest.raises(DQError, match="DQBENCH_EVAL_VIA='inproc': one of server, in-process"):
        load_settings({"DQBENCH_EVAL_VIA": "inproc"})
    assert load_settings({}).eval_via is None and load_settings({"DQBENCH_PRESTART": "1"}).prestart

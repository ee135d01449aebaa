"""serving.engine_args resolved with argparse's rule against vLLM's own options: abbreviations of managed
flags, unknown and ambiguous keys are refused at plan time with the fix."""

import dataclasses
import subprocess

import pytest

from harness.errors import PlanError
from harness.plan import plan_matrix
from harness.plan.engine_args import resolve, vllm_arg_problems, vllm_options
from harness.spec import parse_matrix

# a slice of vLLM 0.32's option strings -> dest (the real list: test_real_vllm_options below)
OPTIONS = {
    "--host": "host",
    "--port": "port",
    "--model": "model",
    "--model-impl": "model_impl",
    "--max-model-len": "max_model_len",
    "--max-num-seqs": "max_num_seqs",
    "--max-num-batched-tokens": "max_num_batched_tokens",
    "--enforce-eager": "enforce_eager",
    "--no-enforce-eager": "enforce_eager",
    "--swap-space": "swap_space",
    "--seed": "seed",
    "--compilation-config": "compilation_config",
    "-cc": "compilation_config",
    "--dtype": "dtype",
}


def test_resolve_follows_argparse():
    assert resolve("--model", OPTIONS) == ("--model", ["--model"])  # exact wins over --model-impl
    assert resolve("--max-num-s", OPTIONS) == ("--max-num-seqs", ["--max-num-seqs"])
    assert resolve("--max-num", OPTIONS) == (None, ["--max-num-batched-tokens", "--max-num-seqs"])
    assert resolve("--nope", OPTIONS) == (None, [])


def test_problems_name_the_key_what_vllm_reads_and_the_fix():
    args = {
        "max_num_seqs": 8,
        "no_enforce": True,
        "ho": "0.0.0.0",
        "max_num": 4,
        "swap": 0,
        "sead": 1,
        "compilation_config.mode": 3,
    }
    got = vllm_arg_problems(args, OPTIONS)
    assert got == [
        "serving.engine_args.ho: vLLM reads it as --host, set by dqbench itself; use the serving fields instead "
        "(managed: config, disable-uvicorn-access-log, dtype, enforce-eager, gpu-memory-utilization, host, "
        "max-model-len, model, no-enforce-eager, port, quantization, served-model-name, speculative-config, "
        "trust-remote-code)",
        "serving.engine_args.max_num: --max-num is ambiguous in vLLM (it abbreviates --max-num-batched-tokens, "
        "--max-num-seqs); write the option in full",
        "serving.engine_args.no_enforce: vLLM reads it as --no-enforce-eager, set by dqbench itself; use the serving "
        "fields instead (managed: config, disable-uvicorn-access-log, dtype, enforce-eager, gpu-memory-utilization, "
        "host, max-model-len, model, no-enforce-eager, port, quantization, served-model-name, speculative-config, "
        "trust-remote-code)",
        "serving.engine_args.sead: vLLM has no option --sead; check the spelling against `vllm serve --help=all` "
        "(or remove it)",
        "serving.engine_args.swap: abbreviates --swap-space; write the option in full (`swap_space`), so the cell id "
        "names what was set",
    ]
    assert vllm_arg_problems({"max_num_seqs": 8, "compilation_config.mode": 3}, OPTIONS) == []


def test_without_vllm_the_list_is_unknown(settings, tmp_path):
    none = dataclasses.replace(settings, python="/bin/false", home=tmp_path)
    assert vllm_options(none) is None and not list(tmp_path.rglob("*.json"))


def _has_vllm(python: str) -> bool:
    r = subprocess.run(
        [python, "-c", "import importlib.util as u; raise SystemExit(u.find_spec('vllm') is None)"],
        capture_output=True,
        timeout=60,
    )
    return r.returncode == 0


def test_real_vllm_options_refuse_prefixes_at_plan_time(settings, base_matrix):
    """The serving env's vLLM parser (built in a subprocess, cached): argparse really reads `--hos` as --host
    (what the spec's prefix check refuses), and unknown or abbreviated keys stop the plan."""
    if not _has_vllm(settings.python):
        pytest.skip(f"no vLLM in the serving interpreter {settings.python}")
    options = vllm_options(settings)
    assert options["--host"] == "host" and options["--trust-remote-code"] == "trust_remote_code"
    assert resolve("--hos", options)[0] == "--host" and resolve("--trust-remote", options)[0] == "--trust-remote-code"
    assert vllm_options(settings) == options  # from the cache
    base_matrix["serving"]["engine_args"] = {"max_num_seqs": 8, "max_num_seq": 8, "no_such_flag": 1}
    with pytest.raises(PlanError) as e:
        plan_matrix(parse_matrix(base_matrix), settings, host="cpu-avx512")
    msg = str(e.value)
    assert "serving.engine_args.no_such_flag: vLLM has no option --no-such-flag" in msg
    assert "serving.engine_args.max_num_seq: abbreviates --max-num-seqs" in msg and "max_num_seqs:" not in msg
    base_matrix["serving"]["engine_args"] = {"max_num_seqs": 8}
    assert plan_matrix(parse_matrix(base_matrix), settings, host="cpu-avx512").cells


def test_command_spells_keys_as_the_plan_resolved_them():
    from harness.result import Artefact
    from harness.serve.vllm import VLLMServer
    from harness.spec.serving import VLLMServing

    spec = VLLMServing(engine_args={"--max_num_seqs": 4, "compilation_config.cudagraph_mode": "NONE"})
    art = Artefact(model="/m", dtype="bfloat16", quantization=None, size_bytes=1, bits_per_weight=16)
    cmd = VLLMServer(spec, "/py", "cpu").command(art, 8000, "dq-x", trust_remote_code=False)
    assert cmd[cmd.index("--max-num-seqs") + 1] == "4"
    assert cmd[cmd.index("--compilation-config.cudagraph_mode") + 1] == "NONE"
    assert vllm_arg_problems(spec.engine_args, OPTIONS) == []


HELP = """----- common params -----

-t,    --threads N                      number of CPU threads to use during generation (default: -1)
-fa,   --flash-attn [on|off|auto]       set Flash Attention use ('on', 'off', or 'auto', default: 'auto')
--spec-draft-threads, -td, --threads-draft N
                                        number of threads to use during generation (default: same as
-np,   --parallel N                     number of server slots (default: -1, -1 = auto)
--ui,  --webui, --no-ui, --no-webui     whether to enable the Web UI (default: enabled)
--threads-http N                        number of threads used to process HTTP requests (default: -1)
"""


def test_llamacpp_flags_are_checked_against_its_spellings():
    from harness.plan.engine_args import llamacpp_arg_problems, parse_llamacpp_help

    groups = parse_llamacpp_help(HELP)
    assert frozenset({"--ui", "--webui", "--no-ui", "--no-webui"}) in groups
    assert frozenset({"-td", "--threads-draft", "--spec-draft-threads"}) in groups
    assert frozenset({"-fa", "--flash-attn"}) in groups and frozenset({"-np", "--parallel"}) in groups
    got = llamacpp_arg_problems({"ui": True, "flash_attn": "on", "threads_http": 2, "thread": 2}, groups)
    assert len(got) == 2
    assert got[0] == (
        "extra_serving[0].extra_args.thread: llama-server has no option --thread; check the spelling "
        "against `llama-server --help` (or remove it)"
    )
    assert got[1].startswith(
        "extra_serving[0].extra_args.ui: --ui is llama-server's --no-ui / --no-webui / --ui / "
        "--webui, set by dqbench itself"
    )


def test_real_llamacpp_help_at_plan_time(settings, base_matrix):
    from harness.plan.engine_args import llamacpp_options

    groups = llamacpp_options(settings)
    if groups is None:
        pytest.skip("llama-server is not built here (./dq setup builds it)")
    assert any({"-c", "--ctx-size"} <= g for g in groups) and any("--flash-attn" in g for g in groups)
    base_matrix["extra_serving"][0]["extra_args"] = {"flash_attn": "off", "no_ui": True}
    with pytest.raises(PlanError, match=r"extra_serving\[0\].extra_args.no_ui: --no-ui is llama-server's"):
        plan_matrix(parse_matrix(base_matrix), settings, host="cpu-avx512")
    base_matrix["extra_serving"][0]["extra_args"] = {"flash_attn": "off"}
    assert plan_matrix(parse_matrix(base_matrix), settings, host="cpu-avx512").cells

"""What a matrix may not do by itself (harness/plan/trust.py, harness/spec/serving.py, sources.py): keys that are
not one option, values read as another option, engine options that load code / connect / touch files without
`--allow-engine-arg`, secrets on the command line, `trust_remote_code` without `--trust-remote-code`, a
repository carrying code (auto_map), a revision that is not a git ref; and the plan fails (not skips) when the
engine's options cannot be read."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from harness.errors import PlanError
from harness.plan import plan_matrix
from harness.plan.engine_args import llamacpp_arg_problems, parse_llamacpp_help, vllm_arg_problems
from harness.plan.trust import RISKY_LLAMACPP, RISKY_VLLM, Grant, auto_map, risk_of
from harness.spec import parse_matrix
from harness.spec.serving import LlamaCppServing, VLLMServing
from harness.spec.sources import HubModel
from tests.unit.plan.test_engine_args import HELP, OPTIONS

VLLM = {
    **OPTIONS,
    "--tool-parser-plugin": "tool_parser_plugin",
    "--worker-extension-cls": "worker_extension_cls",
    "--middleware": "middleware",
    "--kv-transfer-config": "kv_transfer_config",
    "--allowed-local-media-path": "allowed_local_media_path",
    "--hf-token": "hf_token",
    "--root-path": "root_path",
    "--some-future-plugin": "some_future_plugin",
}
LLAMA = parse_llamacpp_help(
    HELP
    + "--rpc SERVERS                           comma-separated list of RPC servers (host:port)\n"
    + "-hf,   -hfr, --hf-repo <user>/<model>[:quant]\n"
    + "--path PATH                             path to serve static files from (default: )\n"
    + "-hft,  --hf-token TOKEN                 Hugging Face access token\n"
)


@pytest.mark.parametrize("key", ["host=0.0.0.0", "max_num_seqs 8", "a\tb", "", "--", "x;y", "a=b.c"])
def test_keys_that_are_not_one_option_are_refused(key):
    for model, field in ((VLLMServing, "engine_args"), (LlamaCppServing, "extra_args")):
        with pytest.raises(ValidationError, match="a key is one option name") as e:
            model(**{field: {key: True}})
        assert repr(key) in str(e.value)


def test_a_text_value_the_parser_would_read_as_an_option_is_refused():
    with pytest.raises(ValidationError, match="starts with `-`, which the engine's parser reads as another option"):
        VLLMServing(engine_args={"enable_prefix_caching": "--host=0.0.0.0"})
    with pytest.raises(ValidationError, match="control character"):
        LlamaCppServing(extra_args={"alias_x": "a\nb"})
    ok = VLLMServing(engine_args={"seed": "-1", "compilation_config.mode": 3, "max_num_seqs": 8, "x+": "1e-3"})
    assert ok.engine_args["seed"] == "-1"


@pytest.mark.parametrize(
    ("key", "risk"),
    [
        ("tool_parser_plugin", "loads code"),
        ("worker_extension_cls", "loads code"),
        ("middleware", "loads code"),
        ("kv_transfer_config", "opens a connection"),
        ("allowed_local_media_path", "reads or writes files"),
        ("some_future_plugin", "loads code"),  # not in the table: its name says what it takes
    ],
)
def test_vllm_options_that_load_code_connect_or_touch_files_need_their_opt_in(key, risk):
    args = {key: "x"}
    got = vllm_arg_problems(args, VLLM)
    name = key.replace("_", "-")
    assert len(got) == 1 and risk in got[0] and f"`--allow-engine-arg {name}`" in got[0]
    granted: list[str] = []
    # any spelling of the name allows it; what was allowed is a line for the plan
    assert vllm_arg_problems(args, VLLM, grant=Grant(engine_args={key}), granted=granted) == []
    assert granted == [f"serving.engine_args.{key}: --{name} ({risk.split(',')[0]}" + granted[0].split(risk)[1]]
    assert f"allowed by --allow-engine-arg {name}" in granted[0]
    # another option's opt-in does not allow it
    assert vllm_arg_problems(args, VLLM, grant=Grant(engine_args={"middleware-x"})) == got


def test_an_abbreviation_does_not_slip_past_its_opt_in():
    got = vllm_arg_problems({"tool_parser_plug": "x"}, VLLM)
    assert got and "abbreviates --tool-parser-plugin" in got[0]  # refused as an abbreviation first
    got = vllm_arg_problems({"--Tool_Parser_Plugin": "x"}, {**VLLM, "--Tool-Parser-Plugin": "tool_parser_plugin"})
    assert got and "loads code" in got[0]


def test_a_secret_on_the_command_line_is_refused_even_when_allowed():
    for grant in (Grant(), Grant(engine_args={"hf-token"})):
        got = vllm_arg_problems({"hf_token": "hf_abc"}, VLLM, grant=grant)
        assert len(got) == 1 and "readable by every user in the process table" in got[0] and "HF_TOKEN" in got[0]
    got = llamacpp_arg_problems({"hf_token": "hf_abc"}, LLAMA, grant=Grant(engine_args={"hft"}))
    assert len(got) == 1 and "--hf-token" in got[0]


def test_harmless_options_need_nothing():
    assert vllm_arg_problems({"max_num_seqs": 8, "root_path": "/x", "seed": 1}, VLLM) == []
    assert llamacpp_arg_problems({"flash_attn": "on", "threads_http": 2}, LLAMA) == []


@pytest.mark.parametrize(("key", "short"), [("rpc", "rpc"), ("hf_repo", "hfr"), ("path", "path")])
def test_llamacpp_options_need_their_opt_in_under_any_spelling(key, short):
    name = key.replace("_", "-")
    got = llamacpp_arg_problems({key: "x"}, LLAMA)
    assert len(got) == 1 and f"--allow-engine-arg {name}" in got[0]
    assert llamacpp_arg_problems({key: "x"}, LLAMA, grant=Grant(engine_args={key})) == []
    assert llamacpp_arg_problems({key: "x"}, LLAMA, grant=Grant(engine_args={short})) == []


def test_every_listed_option_exists_in_the_builds_here(settings):
    """The tables name real options of the builds the set-up installed (a renamed option would slip past)."""
    from harness.plan.engine_args import llamacpp_options, vllm_options

    options = vllm_options(settings)
    if options is not None:
        names = {o[2:] for o in options if o.startswith("--")}
        assert [n for n, r in RISKY_VLLM.items() if r and n not in names] == []
    groups = llamacpp_options(settings)
    if groups is not None:
        spelled = {s.lstrip("-") for g in groups for s in g}
        assert [n for n, r in RISKY_LLAMACPP.items() if r and n not in spelled] == []
    if options is None and groups is None:
        pytest.skip("neither vLLM nor llama-server here")


def test_risk_by_name_for_options_no_table_lists():
    assert risk_of(["--new-thing-url"], {}) == "connection"
    assert risk_of(["--cache-dir"], {}) == "files"
    assert risk_of(["--foo-cls"], {}) == "code"
    assert risk_of(["--db-password"], {}) == "secret"
    assert risk_of(["--max-num-seqs"], {}) is None


def test_trust_remote_code_needs_its_flag(settings, base_matrix):
    base_matrix["models"][0]["trust_remote_code"] = True
    with pytest.raises(PlanError, match="run with --trust-remote-code"):
        plan_matrix(parse_matrix(base_matrix), settings, host="cpu-avx512")
    plan = plan_matrix(parse_matrix(base_matrix), settings, host="cpu-avx512", grant=Grant(trust_remote_code=True))
    assert any("allowed by --trust-remote-code" in g for g in plan.grants)


def _auto_map_model(tmp_path: Path) -> Path:
    from harness.settings import load_settings

    src = load_settings().models_dir / "smollm2-135m-instruct"
    if not (src / "config.json").is_file():
        pytest.skip("embedded model not prepared")
    folder = tmp_path / "coded"
    folder.mkdir()
    cfg = json.loads((src / "config.json").read_text())
    cfg["auto_map"] = {"AutoConfig": "configuration_evil.EvilConfig"}
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def test_a_repository_with_code_is_refused_without_the_opt_in(settings, base_matrix, tmp_path):
    folder = _auto_map_model(tmp_path)
    assert auto_map(folder) == {"config.json": {"AutoConfig": "configuration_evil.EvilConfig"}}
    base_matrix["models"] = [{"name": "coded", "source": {"kind": "local", "path": str(folder)}}]
    with pytest.raises(PlanError, match=r"carries its own code .*auto_map|carries its own code") as e:
        plan_matrix(parse_matrix(base_matrix), settings, host="cpu-avx512")
    assert "configuration_evil.EvilConfig" in str(e.value) and "--trust-remote-code" in str(e.value)
    # trust_remote_code on the model alone is not enough: the command line must say so too
    base_matrix["models"][0]["trust_remote_code"] = True
    with pytest.raises(PlanError, match="run with --trust-remote-code"):
        plan_matrix(parse_matrix(base_matrix), settings, host="cpu-avx512")
    assert plan_matrix(parse_matrix(base_matrix), settings, host="cpu-avx512", grant=Grant(trust_remote_code=True))


def test_the_plan_fails_when_the_engine_options_cannot_be_read(settings, base_matrix, tmp_path):
    blind = dataclasses.replace(settings, python="/bin/false", home=tmp_path, llamacpp_dir=tmp_path / "none")
    base_matrix["serving"]["engine_args"] = {"max_num_seqs": 8}
    with pytest.raises(PlanError, match="vLLM's options could not be read to check it") as e:
        plan_matrix(parse_matrix(base_matrix), blind, host="cpu-avx512")
    assert "/bin/false" in str(e.value) and "exit code 1" in str(e.value)
    base_matrix["serving"]["engine_args"] = {}
    base_matrix["extra_serving"][0]["extra_args"] = {"flash_attn": "off"}
    with pytest.raises(PlanError, match="llama-server's options could not be read to check it: llama-server is not"):
        plan_matrix(parse_matrix(base_matrix), blind, host="cpu-avx512")
    base_matrix["extra_serving"][0]["extra_args"] = {}
    assert plan_matrix(parse_matrix(base_matrix), blind, host="cpu-avx512").cells  # no flags: nothing to read


@pytest.mark.parametrize("rev", ["../../x", "a..b", "x y", "v1.lock", "/main", "main/", "a@{1}", "x:y", "~1"])
def test_a_revision_that_is_not_a_git_ref_is_refused(rev):
    with pytest.raises(ValidationError, match="use a branch, a tag or a full commit sha"):
        HubModel(kind="hub", id="org/m", revision=rev)


@pytest.mark.parametrize("rev", ["main", "v1.0", "refs/pr/1", "0" * 40, "release-2024_01+x"])
def test_git_refs_and_commits_are_revisions(rev):
    assert HubModel(kind="hub", id="org/m", revision=rev).revision == rev


@pytest.mark.parametrize("repo", ["../..", "org/.x", "a--b/c", "org/m.", "-o/m"])
def test_a_hub_id_that_would_name_other_folders_is_refused(repo):
    with pytest.raises(ValidationError):
        HubModel(kind="hub", id=repo)


def test_the_converter_wrapper_refuses_repository_code(tmp_path):
    """llama.cpp's converter asks transformers for repository code whatever it is told; run through
    harness/compress/remote_code.py it cannot load any. Shown on a script that does what the converter does."""
    pytest.importorskip("transformers")
    repo = tmp_path / "repo"
    repo.mkdir()
    marker = tmp_path / "ran"
    (repo / "config.json").write_text(
        json.dumps({"model_type": "evil", "auto_map": {"AutoConfig": "configuration_evil.EvilConfig"}})
    )
    (repo / "configuration_evil.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n"
        "from transformers import PretrainedConfig\nclass EvilConfig(PretrainedConfig):\n    model_type = 'evil'\n"
    )
    script = tmp_path / "convert.py"
    script.write_text(
        "import sys\nfrom transformers import AutoConfig\n"
        "AutoConfig.from_pretrained(sys.argv[1], trust_remote_code=True)\nprint('loaded')\n"
    )
    from harness.proc import child_env

    env = child_env({"HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")})
    guarded = subprocess.run(
        [sys.executable, "-m", "harness.compress.remote_code", str(script), str(repo)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert guarded.returncode != 0 and "RemoteCodeRefused" in guarded.stderr and not marker.exists()
    plain = subprocess.run(
        [sys.executable, str(script), str(repo)], env=env, capture_output=True, text=True, timeout=300
    )
    assert plain.returncode == 0 and marker.read_text() == "ran"  # what the wrapper kept from happening

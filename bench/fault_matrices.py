"""Bad matrices for bench/faults.py: each a matrix someone else could hand over, which `harness run` must refuse
before anything loads (issue #30). Each case turns bench/faults.yaml into its bad variant (`mutate`, given the
document and a folder for files it needs) and names what the refusal must say (`expect`), the exit code
(2: the spec, 3: the plan) and any environment it runs under (an engine whose options cannot be read).

Pure apart from writing the files a case needs into its folder (a model folder carrying `auto_map`).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class BadMatrix:
    name: str
    what: str
    mutate: Callable[[dict, Path], None]
    expect: str  # a part of the one error the run must print
    rc: int  # 2: refused by the spec, 3: by the plan
    env: dict[str, str] = field(default_factory=dict)


def _engine_args(args: dict) -> Callable[[dict, Path], None]:
    def mutate(doc: dict, folder: Path) -> None:
        doc["serving"]["engine_args"] = args

    return mutate


def _extra_args(args: dict) -> Callable[[dict, Path], None]:
    def mutate(doc: dict, folder: Path) -> None:
        doc["extra_serving"] = [{"kind": "llamacpp", "extra_args": args}]

    return mutate


def _trust(doc: dict, folder: Path) -> None:
    doc["models"][0]["trust_remote_code"] = True


def _revision(doc: dict, folder: Path) -> None:
    doc["models"] = [{"name": "m", "source": {"kind": "hub", "id": "org/model", "revision": "../../../etc"}}]


def coded_model(folder: Path, home: Path) -> Path:
    """The embedded model's config and tokenizer in `folder`, its config naming repository code (auto_map)."""
    src = home / "models" / "smollm2-135m-instruct"
    out = folder / "coded-model"
    out.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        if (src / name).is_file():
            shutil.copy(src / name, out / name)
    cfg = json.loads((src / "config.json").read_text())
    cfg["auto_map"] = {"AutoConfig": "configuration_evil.EvilConfig", "AutoModelForCausalLM": "modeling_evil.Evil"}
    (out / "config.json").write_text(json.dumps(cfg))
    (out / "configuration_evil.py").write_text("raise SystemExit('repository code ran')\n")
    return out


def _auto_map(home: Path) -> Callable[[dict, Path], None]:
    def mutate(doc: dict, folder: Path) -> None:
        doc["models"][0]["source"] = {"kind": "local", "path": str(coded_model(folder, home))}

    return mutate


def cases(home: Path) -> list[BadMatrix]:
    return [
        BadMatrix("key-equals", "engine_args key holding `=`", _engine_args({"host=0.0.0.0": True}), "holds `=`", 2),
        BadMatrix(
            "value-option",
            "engine_args value read as an option",
            _engine_args({"enable_prefix_caching": "--host=0.0.0.0"}),
            "reads as another option",
            2,
        ),
        BadMatrix(
            "code-option",
            "vLLM option that loads code",
            _engine_args({"worker_extension_cls": "evil.Ext"}),
            "--worker-extension-cls loads code",
            3,
        ),
        BadMatrix(
            "connect-option",
            "llama.cpp option that connects",
            _extra_args({"rpc": "192.0.2.7:50052"}),
            "--rpc opens a connection",
            3,
        ),
        BadMatrix(
            "files-option",
            "llama.cpp option that serves files",
            _extra_args({"path": "/"}),
            "--path reads or writes files",
            3,
        ),
        BadMatrix(
            "secret-option", "a token on the command line", _engine_args({"hf_token": "hf_x"}), "process table", 3
        ),
        BadMatrix("trust-remote-code", "trust_remote_code without the flag", _trust, "--trust-remote-code", 3),
        BadMatrix("auto-map", "a repository carrying code", _auto_map(home), "carries its own code", 3),
        BadMatrix("revision", "a revision that is no git ref", _revision, "use a branch, a tag", 2),
        BadMatrix(
            "unreadable-options",
            "engine options with no option list",
            _engine_args({"max_num_seqs": 4}),
            "could not be read to check it",
            3,
            env={"DQBENCH_STAGE_PYTHON": "/bin/false"},
        ),
    ]

"""What a matrix may make dqbench do beyond measuring, and the command-line opt-ins that allow it (`Grant`).

A matrix file can come from someone else (a colleague's, a paper's, a CI job's), so whatever in it would run
code, open a connection or touch files outside the cell is refused unless the person running it says so on
the command line:

- engine options that load code (vLLM `--tool-parser-plugin`, `--worker-extension-cls`, `--middleware` ...),
  open connections or download (llama.cpp `--rpc`, `-hf`, vLLM `--kv-transfer-config` ...) or read or write
  files (llama.cpp `--path`, vLLM `--allowed-local-media-path` ...) need `--allow-engine-arg NAME` each
  (`RISKY_VLLM`, `RISKY_LLAMACPP`, and `risk_of` for names no table lists yet). Options that put a secret on
  the command line (`--hf-token`, `--api-key`), where every user of the machine can read it in the process
  table, are refused outright: the environment or a per-node login carries the token (docs/operations.md).
- `trust_remote_code: true` on a model needs `--trust-remote-code`, and so does a model whose repository
  carries its own code (`auto_map` in config.json or tokenizer_config.json): several loaders (llama.cpp's
  converter, AutoAWQ) would run it whatever the matrix says (`remote_code_problem`).

What was allowed is named in the plan (`Plan.grants`), shown by `harness plan` and at the start of a run.
The engine options are checked here against the option each key resolves to in the engine's own parser
(harness/plan/engine_args.py), so an abbreviation or another spelling does not slip past. Pure apart from
reading config files already on disk.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from harness.spec.base import Strict

Risk = Literal["code", "connection", "files", "secret"]
WHAT: dict[str, str] = {
    "code": "loads code",
    "connection": "opens a connection or downloads",
    "files": "reads or writes files outside the cell",
    "secret": "puts a secret on the command line, readable by every user in the process table",
}

# vLLM's options (long names, without dashes) by what they do; checked on the option a key resolves to.
RISKY_VLLM: dict[str, Risk | None] = {
    # names that read like a connection or a path but are neither (None: nothing to allow)
    **dict.fromkeys(("root-path", "enable-tokenizer-info-endpoint", "no-enable-tokenizer-info-endpoint")),
    **dict.fromkeys(
        (
            "tool-parser-plugin",
            "reasoning-parser-plugin",
            "io-processor-plugin",
            "worker-cls",
            "worker-extension-cls",
            "scheduler-cls",
            "middleware",
            "logits-processors",
            "distributed-executor-backend",  # a qualified class name is imported
            "model-class-overrides",
            "log-config-file",  # logging's dictConfig instantiates the classes it names
            "logging-config",
            "additional-config",  # read by platform plugins
            "model-impl",
        ),
        "code",
    ),
    **dict.fromkeys(
        (
            "kv-transfer-config",
            "ec-transfer-config",
            "kv-events-config",
            "weight-transfer-config",
            "otlp-traces-endpoint",
            "data-parallel-address",
            "data-parallel-rpc-port",
            "master-addr",
            "master-port",
            "nnodes",
            "node-rank",
            "headless",
            "grpc",
            "grpc-port",
            "tool-server",
            "allowed-media-domains",
            "load-format",  # runai_streamer, tensorizer: object stores and URLs
            "model-loader-extra-config",
            "speculative-config",  # a draft model by path or hub id
            "spec-model",
            "tokenizer",
            "tokenizer-revision",
            "revision",
            "code-revision",
            "hf-config-path",
            "enable-scale-out",
        ),
        "connection",
    ),
    **dict.fromkeys(
        (
            "download-dir",
            "generation-config",
            "chat-template",
            "allowed-local-media-path",
            "lora-modules",
            "default-mm-loras",
            "ssl-keyfile",
            "ssl-certfile",
            "ssl-ca-certs",
            "uds",
            "profiler-config",
            "mm-encoder-fp8-scale-path",
            "mm-encoder-fp8-scale-save-path",
        ),
        "files",
    ),
    **dict.fromkeys(("hf-token", "api-key"), "secret"),
}

# llama-server's options (any spelling, without dashes) by what they do; checked on every spelling of the option.
RISKY_LLAMACPP: dict[str, Risk | None] = {
    "no-host": None,  # host buffers (memory), not a network host
    **dict.fromkeys(
        (
            "tools",
            "tools-runtime",
            "agent",
            "ag",
            "mcp-servers-config",
            "mcp-servers-json",
            "webui-mcp-proxy",
            "ui-mcp-proxy",
            "video-ffmpeg-dir",  # runs the binaries it finds there
            "props",  # lets any client change the server's settings (POST /props)
        ),
        "code",
    ),
    **dict.fromkeys(
        (
            "rpc",
            "hf-repo",
            "hf",
            "hfr",
            "hf-file",
            "hff",
            "model-url",
            "mu",
            "docker-repo",
            "dr",
            "hf-repo-draft",
            "spec-draft-hf",
            "hfd",
            "hfrd",
            "mmproj-url",
            "mmu",
            "mmproj-auto",
            "models-dir",
            "models-preset",
            "models-autoload",
            "embd-gemma-default",
            "fim-qwen-1.5b-default",
            "fim-qwen-3b-default",
        ),
        "connection",
    ),
    **dict.fromkeys(
        (
            "path",  # serves a folder's files over HTTP
            "media-path",
            "lora",
            "lora-scaled",
            "control-vector",
            "control-vector-scaled",
            "mmproj",
            "mm",
            "model-draft",
            "md",
            "spec-draft-model",
            "grammar-file",
            "json-schema-file",
            "jf",
            "chat-template-file",
            "api-key-file",
            "ssl-key-file",
            "ssl-cert-file",
            "log-file",
            "slot-save-path",
            "log-prompts-dir",
            "lookup-cache-static",
            "lcs",
            "lookup-cache-dynamic",
            "lcd",
            "webui-config-file",
            "ui-config-file",
        ),
        "files",
    ),
    **dict.fromkeys(("hf-token", "hft", "api-key"), "secret"),
}

# For options no table lists (a newer engine build): names that say what the option takes.
_BY_NAME: list[tuple[re.Pattern[str], Risk]] = [
    (re.compile(r"(^|-)(token|api-key|password|secret)$"), "secret"),
    (re.compile(r"(^|-)(plugin|plugins|cls|class|module)$"), "code"),
    (re.compile(r"(^|-)(url|uri|endpoint|address|addr|host|hosts|repo|server|servers)$"), "connection"),
    (re.compile(r"(^|-)(file|path|dir|folder|certfile|keyfile|certs)$"), "files"),
]


def option_name(flag: str) -> str:
    """An option as the tables spell it: no leading dashes, dashes for underscores (`--tool_parser` ->
    `tool-parser`)."""
    return flag.lstrip("-").replace("_", "-").lower()


def risk_of(names: Iterable[str], table: dict[str, Risk | None]) -> Risk | None:
    """What an option does that needs an opt-in (None: nothing), from any of its spellings `names`: the
    engine's table first, then what its name says it takes."""
    spelled = [option_name(n) for n in names]
    for n in spelled:
        if n in table:
            return table[n]
    for n in spelled:
        for pattern, risk in _BY_NAME:
            if pattern.search(n):
                return risk
    return None


class Grant(Strict):
    """What the command line allows a matrix beyond measuring: `--allow-engine-arg NAME` (repeatable) and
    `--trust-remote-code`. The default allows nothing."""

    engine_args: frozenset[str] = Field(default_factory=frozenset)
    trust_remote_code: bool = False

    @field_validator("engine_args", mode="before")
    @classmethod
    def _spelled(cls, v: object) -> object:
        return frozenset(option_name(str(x)) for x in v) if isinstance(v, Iterable) and not isinstance(v, str) else v

    def allows(self, names: Iterable[str]) -> bool:
        return "*" in self.engine_args or any(option_name(n) in self.engine_args for n in names)

    @classmethod
    def reading(cls) -> Grant:
        """For commands that plan a matrix only to read its results (`harness status`, `report`): nothing runs,
        so whatever the matrix asks is allowed; a secret on the command line is still refused."""
        return cls(engine_args=frozenset({"*"}), trust_remote_code=True)


def engine_arg_verdict(
    field: str, key: str, names: list[str], table: dict[str, Risk | None], grant: Grant
) -> tuple[str | None, str | None]:
    """(problem, grant line) for one engine option: `names` are the spellings of the option `key` resolves to
    (its long name first). A problem when it needs an opt-in the command line did not give (or can never
    have: a secret); the line the plan names when it was allowed."""
    risk = risk_of(names, table)
    if risk is None:
        return None, None
    name = option_name(names[0])
    if risk == "secret":
        return (
            f"{field}.{key}: --{name} {WHAT['secret']}; give the engine its secret through the environment "
            f"(HF_TOKEN) or a per-node login (`hf auth login`) instead, and remove it from the matrix",
            None,
        )
    if grant.allows(names):
        return None, f"{field}.{key}: --{name} ({WHAT[risk]}), allowed by --allow-engine-arg {name}"
    return (
        f"{field}.{key}: --{name} {WHAT[risk]}, which a matrix may not do by itself; if you trust this "
        f"matrix, allow it on the command line with `--allow-engine-arg {name}`",
        None,
    )


def auto_map(folder: Path) -> dict[str, object]:
    """The repository code a checkpoint folder names (`auto_map` of config.json and tokenizer_config.json,
    file -> its map); {} when it names none or the folder is not here."""
    out: dict[str, object] = {}
    for name in ("config.json", "tokenizer_config.json"):
        try:
            doc = json.loads((folder / name).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and doc.get("auto_map"):
            out[name] = doc["auto_map"]
    return out


def remote_code_problem(model_name: str, folder: Path, trust_remote_code: bool) -> str | None:
    """Why the checkpoint in `folder` may not be loaded: its repository carries code (auto_map) and the
    model is not `trust_remote_code: true` (which itself needs --trust-remote-code: `trust_problems`)."""
    code = auto_map(folder)
    if not code or trust_remote_code:
        return None
    where = "; ".join(f"{f}: {json.dumps(m)[:200]}" for f, m in code.items())
    return (
        f"model {model_name}: its repository ({folder}) carries its own code ({where}); some loaders (llama.cpp's "
        f"converter, AutoAWQ) would run it. If you trust it, set `trust_remote_code: true` on the model and run "
        f"with --trust-remote-code; else use a checkpoint without auto_map"
    )


def trust_problems(models: Iterable[object], grant: Grant) -> tuple[list[str], list[str]]:
    """(problems, grant lines) of the models' `trust_remote_code`: true needs --trust-remote-code."""
    problems, lines = [], []
    for m in models:
        if not getattr(m, "trust_remote_code", False):
            continue
        name = getattr(m, "name", "?")
        if grant.trust_remote_code:
            lines.append(
                f"models[{name}].trust_remote_code: its repository's code runs, allowed by --trust-remote-code"
            )
        else:
            problems.append(
                f"models[{name}].trust_remote_code: true runs code from the model's repository, which a matrix may "
                f"not ask by itself; if you trust that repository, run with --trust-remote-code"
            )
    return problems, lines

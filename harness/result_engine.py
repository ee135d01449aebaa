"""The parts of a CellResult that an engine feature adds, beside the load test and the quality they belong to
(harness/result.py holds the result and imports these): energy per load level and the counter it was read from
(issue #28, harness/measure/energy.py), and a spec-decoded cell's draft counters per level, its prediction, its
equal-output check and its summary (harness/cell/speculative.py). No heavy imports: the advisor reads them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from harness.result_block import Block


class LevelEnergy(Block):
    """Energy a load level took, read from the host's counter (harness/measure/energy.py) at the level's first send
    and after its last answer: a reading, never an estimate. `scope` says what the counter covers (RAPL: the CPU
    packages, every process on them; NVML: the whole GPU)."""

    counter: str  # rapl:<zones> | nvml:<devices>
    scope: str
    joules: float
    seconds: float  # the counter's window: from the level's first send to its last answer
    output_tokens: int  # of the level's completed requests
    requests: int  # completed requests
    joules_per_token: float | None = None
    tokens_per_joule: float | None = None
    joules_per_request: float | None = None
    watts: float | None = None  # mean power over the window


class LevelSpeculative(Block):
    """A spec-decoded cell's draft counters over one level (the engine's own Prometheus counters, read before and
    after it: llama-server's `llamacpp:spec_decode_*`, vLLM's `vllm:spec_decode_*`). acceptance_rate = accepted /
    drafted tokens; mean_accepted_len = 1 + accepted / drafts (tokens per target verification step, the bonus
    token included: vLLM's definition, and the quantity Leviathan et al. 2023 predict)."""

    drafts: int  # verification steps with a draft
    draft_tokens: int
    accepted_tokens: int
    acceptance_rate: float | None = None
    mean_accepted_len: float | None = None
    target_output_tok_s: float | None = None  # the same level of the target without a draft (its stored result)
    speedup: float | None = None  # output tok/s over the target's at this level


class EnergyMeter(Block):
    """The energy counter a load test read (harness/measure/energy.py): `counter` None means none was readable,
    and `note` says why ("not measurable on this host: ..."); there is then no energy figure, never an estimate."""

    counter: str | None = None
    scope: str | None = None
    note: str | None = None


class SpecPrediction(Block):
    """The accepted length predicted before running (harness/plan/speculative.py): Leviathan et al. 2023,
    E[tokens per verification step] = (1 - alpha^(gamma+1)) / (1 - alpha), with alpha the draft's measured top-1
    agreement with the target (greedy: a drafted token is accepted when it is the target's argmax)."""

    alpha: float | None = None
    gamma: int
    mean_accepted_len: float | None = None
    source: str | None = None  # which measurement alpha is (the cell and its shift block)
    note: str | None = None  # why there is no prediction, or what it assumes


class EqualOutput(Block):
    """Greedy outputs of the spec-decoded cell against its target's (harness/cell/speculative.py): speculative
    decoding must not change them, so any difference is an engine fault, never a quality drop."""

    verdict: Literal["equal", "differs", "unchecked"]
    tasks_compared: list[str] = Field(default_factory=list)  # tasks scored by both with their per-item scores
    items_compared: int = 0
    items_differing: int = 0
    # task -> metric -> [cell, target]: aggregate scores that differ
    scores_differing: dict[str, dict[str, list[float | None]]] = Field(default_factory=dict)
    generations_compared: int = 0  # generated answers compared text for text (generative tasks)
    generations_differing: int = 0
    examples: list[dict[str, Any]] = Field(default_factory=list)  # a few differing items: task, doc, cell, target
    inherited: dict[str, str] = Field(default_factory=dict)  # task -> why it was not re-scored
    note: str | None = None


class Speculative(Block):
    """A spec-decoded cell (issue #28): its draft, its target, what was predicted before running and what was
    measured (acceptance and speed-up per load level are on the levels, `perf.levels[*].speculative`)."""

    draft: str  # the draft's name (axes.draft)
    draft_model: str | None = None  # what was served as the draft (a file or folder)
    draft_quantization: str | None = None
    draft_cell: str | None = None  # the student cell it was built as (None: a hub/local draft)
    tokens: int  # speculative tokens per step (gamma)
    target_id: str
    engine: str
    counters: str | None = None  # where acceptance was read
    predicted: SpecPrediction | None = None
    acceptance_rate: float | None = None  # over every level
    mean_accepted_len: float | None = None  # over every level
    speedup_c1: float | None = None  # at concurrency 1 (the synchronous level), over the target's
    speedup_top: float | None = None  # at the highest concurrency measured
    equal_output: EqualOutput | None = None
    note: str | None = None

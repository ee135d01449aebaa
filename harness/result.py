"""CellResult: the one typed record of what happened to a cell on a host — the pipeline fills it, the store
serialises it (results/cells/<cell_id>@<host_id>.json, the source of truth), and everything else (DuckDB
rows, `harness status`, the dashboard, the advisor) derives from it.

This module owns the shape; harness/result_facts.py owns what is derived from it, each fact once: the
headline figures, the flat figures of a row, a cell's display status, a task's primary score. Per-item
scores are data, not derived: `TaskScore.items` (filled from lm-eval's samples, harness/evaluate/items.py)
and the accessors `item_scores()` / `CellResult.items()` that flips and paired CIs read. Blocks keep engine-
or method-specific detail as extra fields (pydantic `extra="allow"`): the result records what an engine said,
and a new engine must not need a schema change to say more. The fields named here are the contract.

Schema history (bump SCHEMA_VERSION on a breaking change, keep a fixture of the old version in
tests/fixtures/, teach `harness/store/results.upgrade` to read it):
  1  no `host`; results/cells/<cell_id>.json
  2  `host`; keyed by (cell_id, host_id); per-item scores only in work/ JSONL files
  3  typed CellResult; per-item scores inside the result (`quality.tasks[*].items`), so the JSON is the
     whole truth and `harness db rebuild` needs nothing else

No heavy imports: the advisor and the dashboard read results through this module.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from harness.hw.caps import UNPROBED_HOST_ID
from harness.result_block import Block
from harness.result_engine import EnergyMeter, LevelEnergy, LevelSpeculative, Speculative

SCHEMA_VERSION: Final = 3
Status = Literal["done", "failed"]
# the per-item metrics kept in `TaskScore.items`: lm-eval's per-sample value of these is the item's own
# score (0/1), which a paired comparison needs. A perplexity's per-sample value is not the metric (it is a
# loglikelihood, or a (loglikelihood, words) pair), so perplexity tasks keep no items. A metric of a
# filtered generative task is keyed as lm-eval writes it with its filter: "exact_match,strict-match". HumanEval's
# "pass@1,create_test" is one greedy sample's pass/fail per problem (harness/evaluate/code_metric.py).
ITEM_METRICS = ("acc", "acc_norm", "exact_match", "pass@1")


def is_item_metric(key: str) -> bool:
    """Whether a metric key ("acc", "exact_match,flexible-extract") has per-item 0/1 scores."""
    return key.partition(",")[0] in ITEM_METRICS


class Percentiles(Block):
    mean: float | None = None
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None


class Steady(Block):
    """A level's figures over its steady window, ramp-up and drain left out (harness/measure/steady.py:
    rates count what happened in the window, latencies are of the requests wholly inside it)."""

    trim: float | None = None  # the share of the level's wall time left out at each end
    windows: list[list[float]] = Field(default_factory=list)  # [start_s, end_s] of each run, from its first send
    duration_s: float = 0.0
    requests: int = 0  # completed requests wholly inside the window: the latency percentiles' sample
    completed: int = 0  # requests that completed inside the window: the rates' count
    req_s: float | None = None
    output_tok_s: float | None = None
    input_tok_s: float | None = None
    ttft_ms: Percentiles = Field(default_factory=Percentiles)
    tpot_ms: Percentiles = Field(default_factory=Percentiles)
    itl_ms: Percentiles = Field(default_factory=Percentiles)
    e2e_ms: Percentiles = Field(default_factory=Percentiles)
    goodput_req_s: float | None = None
    slo_attainment: float | None = None


class Spread(Block):
    """One figure over the runs of a repeated level: mean, 95 % t interval, coefficient of variation."""

    mean: float | None = None
    ci95: list[float] | None = None  # [low, high]
    cv: float | None = None
    values: list[float] = Field(default_factory=list)


class Repeats(Block):
    """A repeated level's spread (harness/measure/repeats.py); its Level's own figures pool the runs."""

    n: int
    output_tok_s: Spread | None = None
    req_s: Spread | None = None
    ttft_ms_p50: Spread | None = None
    tpot_ms_p50: Spread | None = None
    e2e_ms_p50: Spread | None = None
    goodput_req_s: Spread | None = None
    noisy_figures: list[str] = Field(default_factory=list)  # those whose CV exceeded load.noisy_cv


class Turn(Block):
    """One turn of a chat level's conversations (harness/measure/workloads.by_turn)."""

    turn: int  # 1-based
    requests: int
    prompt_tokens: float  # the turn's mean prompt length: a later turn carries the history before it
    ttft_ms: Percentiles = Field(default_factory=Percentiles)


class Level(Block):
    """One load level, as harness/measure/level.combine makes it from its requests' records. The fields
    after `errors` came later: results measured before them read as having no SLO, no steady window and
    one run."""

    profile: str  # synchronous | concurrency | poisson | constant
    level: float  # concurrency, or request rate for poisson and constant
    requests: int
    completed: int
    failed: int
    duration_s: float = 0.0
    req_s: float = 0.0
    output_tok_s: float = 0.0
    input_tok_s: float = 0.0
    ttft_ms: Percentiles = Field(default_factory=Percentiles)
    tpot_ms: Percentiles = Field(default_factory=Percentiles)
    itl_ms: Percentiles = Field(default_factory=Percentiles)
    e2e_ms: Percentiles = Field(default_factory=Percentiles)
    errors: list[str] = Field(default_factory=list)
    goodput_req_s: float | None = None  # under the plan's load.slo; None without one
    slo_attainment: float | None = None  # share of the level's requests meeting every objective
    slo_met: bool | None = None  # slo_attainment >= load.slo.percentile
    steady: Steady | None = None
    repeats: Repeats | None = None  # None: the level ran once
    noisy: bool = False  # a repeated level whose CV of a judged figure exceeds load.noisy_cv
    schedule_lag_ms: Percentiles | None = None  # open-loop levels: request start - scheduled send time
    retried: int = 0  # requests sent again after a stale keep-alive connection (harness/measure/loadgen.send_one)
    abandoned: int = 0  # of `failed`: never sent or cut off because the server stopped serving
    first_error: str | None = None  # the error of the earliest failed request (abandoned ones last)
    turns: list[Turn] | None = None  # chat: per turn, its requests' TTFT and prompt tokens
    # prompt tokens served from the engine's prefix cache (usage.prompt_tokens_details.cached_tokens:
    # llama-server always, vLLM with --enable-prompt-tokens-details); None when the engine does not say
    cached_tokens: int | None = None
    energy: LevelEnergy | None = None  # what the host's energy counter read over the level (issue #28)
    speculative: LevelSpeculative | None = None  # a spec-decoded cell: the engine's draft counters over the level
    # fields that came after results existed: left out of dumps at their defaults, so a result written
    # before them reads back as it was written
    late_fields: ClassVar[tuple[str, ...]] = (
        "goodput_req_s",
        "slo_attainment",
        "slo_met",
        "steady",
        "repeats",
        "noisy",
        "schedule_lag_ms",
        "energy",
        "speculative",
    )
    # fields the load generator always writes, which results measured before them lack: left out of dumps
    # where unset (a result read back as it was written), kept where set, zeros and nulls included
    set_fields: ClassVar[tuple[str, ...]] = ("retried", "abandoned", "first_error", "turns", "cached_tokens")

    @model_serializer(mode="wrap")
    def _drop_late_defaults(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out: dict[str, Any] = handler(self)
        for name in self.late_fields:
            if getattr(self, name) == type(self).model_fields[name].get_default():
                out.pop(name, None)
        for name in self.set_fields:
            if name not in self.model_fields_set:
                out.pop(name, None)
        return out


class Sweep(Block):
    """What a `sweep` load profile found (harness/measure/sweep.py): the synchronous baseline and the
    maximum-throughput rates it spanned, the constant rates it ran, where the server saturated and the
    highest rate that still met `load.slo`. Figures are requests/s; None where the sweep did not reach it."""

    sync_req_s: float | None = None  # the synchronous (one request at a time) baseline
    max_req_s: float | None = None  # the maximum-throughput level's achieved rate
    rates: list[float] = Field(default_factory=list)  # the constant rates tried, in order
    saturation_req_s: float | None = None  # the first rate at which the server saturated; None: never
    saturation_reason: str | None = None  # why that level counts as saturated
    max_rate_at_slo_req_s: float | None = None  # the highest rate whose level met load.slo; None: none did
    stopped_early: bool = False  # levels after saturation were skipped
    # added with the sweep itself (harness/measure/sweep.py): how it chose and judged its rates
    arrival: str | None = None  # constant | poisson: the rate levels' arrivals
    planned_rates: list[float] = Field(default_factory=list)  # the rates spaced between sync and max
    achieved_req_s: list[float | None] = Field(default_factory=list)  # per rate tried: completions/s (worst run)
    ttft_growth: list[float | None] = Field(default_factory=list)  # per rate tried: TTFT last third / first
    max_sustained_req_s: float | None = None  # the highest rate that did not saturate (else sync_req_s)


class Perf(Block):
    """The load test (harness/measure/run.measure). `headline` is the copy of the headline figures it showed
    while running, never read back: every reader derives the headline from `levels`
    (harness/result_facts.headline)."""

    levels: list[Level] = Field(default_factory=list)
    wall_s: float | None = None
    stopped: str | None = None  # why the load test stopped early (dead server, too many failures)
    sweep: Sweep | None = None  # a `sweep` profile's findings; None without one (then left out of dumps)
    input_tokens: int | None = None  # load.input_tokens
    output_tokens: int | None = None  # load.output_tokens
    workload: dict[str, Any] | None = None  # what the load test sent: load.workload as the spec dumps it
    headline: dict[str, Any] | None = None
    # which energy counter the levels read, or why none (issue #28): "not measurable on this host: ..."
    energy: EnergyMeter | None = None
    # fields measure() always writes, which results written before them lack (`workload`) or might: left
    # out of dumps where unset, so a result reads back as it was written
    set_fields: ClassVar[tuple[str, ...]] = ("input_tokens", "output_tokens", "workload", "headline", "energy")

    @model_serializer(mode="wrap")
    def _drop_unset_sweep(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out: dict[str, Any] = handler(
            self
        )  # added in schema 3's lifetime: a result without a sweep reads back as written
        if isinstance(out, dict):
            if out.get("sweep") is None:
                out.pop("sweep", None)
            for name in self.set_fields:
                if name not in self.model_fields_set:
                    out.pop(name, None)
        return out


class Metric(Block):
    value: float | None = None
    stderr: float | None = None


class Item(BaseModel):
    """One scored document: what flips and paired bootstraps compare between a cell and its reference."""

    model_config = ConfigDict(extra="forbid")
    doc_id: int
    scores: dict[str, float]  # metric -> value (0/1 for accuracies)
    task: str | None = None  # the subtask of a group (`mmlu_anatomy` in `mmlu`): doc ids repeat across them

    @model_serializer(mode="wrap")
    def _compact(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out: dict[str, Any] = handler(self)  # thousands of items per result: no "task": null on each
        if isinstance(out, dict) and out.get("task") is None:
            out.pop("task", None)
        return out

    @property
    def key(self) -> int | str:
        return self.doc_id if self.task is None else f"{self.task}:{self.doc_id}"


class PromptFormat(Block):
    """How a task's prompts were formatted (harness/spec/chat.py) and, under the chat template, the sha256 of the
    template text that rendered them (the scoring model's tokenizer's): two scores of one task are comparable only
    when these are equal (harness/evaluate/reference.py refuses to pair them otherwise)."""

    apply_chat_template: bool = False
    fewshot_as_multiturn: bool = False
    system_instruction: str | None = None
    template_sha256: str | None = None  # None: no template applied

    def mismatch(self, other: PromptFormat) -> str | None:
        """Why a score in `other`'s format cannot be paired with one in this format (None: it can)."""
        fields = ("apply_chat_template", "fewshot_as_multiturn", "system_instruction", "template_sha256")
        a, b = self.model_dump(include=set(fields)), other.model_dump(include=set(fields))
        diff = [f"{f} {a[f]!r} vs {b[f]!r}" for f in fields if a[f] != b[f]]
        return "prompt format differs: " + ", ".join(diff) if diff else None


class TaskScore(Block):
    metrics: dict[str, Metric] = Field(default_factory=dict)
    n: int | None = None
    n_total: int | None = None
    limit: int | None = None
    num_fewshot: int | None = None  # the effective count lm-eval used (a group's: its subtasks', when equal)
    task_hash: str | None = None
    # where the documents came from: "local:<package>" (offline, harness/evaluate/catalog.py) or "hub"
    data_source: str | None = None
    # a group's or tag's subtasks: name -> metric -> value (the task's own metrics are the group's)
    subtasks: dict[str, dict[str, float | None]] = Field(default_factory=dict)
    items: list[Item] = Field(default_factory=list)
    # how the prompts were formatted (chat template or not, and which); None: a result from before it was recorded
    prompt_format: PromptFormat | None = None

    @model_serializer(mode="wrap")
    def _drop_unset_additions(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out: dict[str, Any] = handler(self)  # fields added in schema 3's lifetime: absent, not null, where unset
        if isinstance(out, dict):
            for k in ("data_source", "subtasks", "prompt_format"):
                if not out.get(k):
                    out.pop(k, None)
        return out

    def item_scores(self, metric: str) -> dict[int | str, float]:
        """item key (doc_id; "<subtask>:<doc_id>" in a group) -> this task's per-item score of `metric`
        (empty when the items do not carry it)."""
        return {i.key: i.scores[metric] for i in self.items if metric in i.scores}

    def item_metrics(self) -> list[str]:
        return sorted({m for i in self.items for m in i.scores})


class DecisionLook(BaseModel):
    """One look of a sequential evaluation: the confidence sequence after `items` paired items."""

    model_config = ConfigDict(extra="forbid")
    items: int
    point: float | None = None
    lo: float | None = None
    hi: float | None = None


class Decision(Block):
    """The sequential evaluation's answer to the matrix's `decide:` question (harness/decide/): the drop of the
    measure against the reference as an anytime-valid confidence sequence over paired items, the verdict
    against the limit, how many items it used, its looks and why it stopped. Drops are in the limit's units:
    a fraction of the reference's score (relative) or of one accuracy unit (absolute)."""

    method: str
    measure: str  # "aggregate" or "<task>/<metric>"
    tasks: dict[str, str] = Field(default_factory=dict)  # measured task -> its per-item metric
    max_drop: str  # as the matrix writes it ("5%", "1.5pt")
    relative: bool
    limit: float
    error_rate: float
    seed: int
    batch_items: int
    max_items: int  # the item budget this run had
    reference: str | None = None  # the reference cell; None: this cell is the reference
    verdict: Literal["within", "beyond", "undecided"] | None = None  # None: the reference itself, or skipped
    stop: str  # harness/decide/sequential.Stop
    stop_reason: str = ""
    items_used: int = 0  # items the verdict used (the reference: items scored for its cells to pair with)
    items: dict[str, int] = Field(default_factory=dict)  # task -> its share of them
    scored: int = 0  # items lm-eval scored in this run
    reused: int = 0  # items read back from the item journal (scored by an earlier run)
    point: float | None = None
    lo: float | None = None
    hi: float | None = None
    looks: list[DecisionLook] = Field(default_factory=list)
    more_items: int | None = None  # undecided: ≈ items more that would decide it (an estimate)
    item_s: float | None = None  # wall seconds per scored item in this run (lm-eval's part)


class Quality(Block):
    tasks: dict[str, TaskScore] = Field(default_factory=dict)
    lm_eval_version: str | None = None
    scored_by: str | None = None  # how the cell was scored: a server's prompt logprobs or an in-process model
    evaluated_via: str | None = None  # "server" | "in-process": where the loglikelihoods were computed (#31)
    # the sequential evaluation's answer (a matrix with `decide:`); None (left out of dumps) otherwise
    decision: Decision | None = None

    @model_serializer(mode="wrap")
    def _drop_unset_late_fields(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out: dict[str, Any] = handler(self)  # added in schema 3's lifetime: a result without them reads as written
        for late in ("decision", "evaluated_via"):
            if isinstance(out, dict) and out.get(late) is None:
                out.pop(late, None)
        return out

    def items(self, task: str, metric: str) -> dict[int | str, float]:
        """doc_id -> per-item score of `task`/`metric` (empty when the task or its items are absent)."""
        t = self.tasks.get(task)
        return t.item_scores(metric) if t is not None else {}


class Artefact(Block):
    """What a cell serves: made by its compressor (harness/compress/), loaded by the serving plugin
    (harness/serve/), stored as the result's `artefact` block as it is. `record` is the compress worker's
    record (recipe, wall time, peak memory ...): the worker's own typed record, dumped."""

    model: str  # local folder, a .gguf file, or a hub id
    dtype: str | None = None  # vLLM --dtype ("gguf" for llama.cpp); every compressor sets one
    quantization: str | None = None  # what the server must report having loaded (None: unquantized)
    size_bytes: int | None = None
    bits_per_weight: float | None = None  # None when the parameter count is unknown (no estimate)
    record: dict[str, Any] = Field(default_factory=dict)
    tokenizer: str | None = None  # HF tokenizer folder when `model` is not one (a .gguf file)
    # engine flags the artefact needs (load-time quantization: `quantization: bitsandbytes`), vLLM's own
    server_args: dict[str, str | int | float | bool] = Field(default_factory=dict)
    # came after results existed: left out of dumps when empty, so a stored result reads back as written
    late_fields: ClassVar[tuple[str, ...]] = ("server_args",)

    @model_serializer(mode="wrap")
    def _drop_late_defaults(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out: dict[str, Any] = handler(self)
        for name in self.late_fields:
            if not getattr(self, name):
                out.pop(name, None)
        return out

    @property
    def tokenizer_src(self) -> str:
        """Where the tokenizer is read from: `tokenizer`, else the model folder itself."""
        return self.tokenizer or self.model


class Serve(Block):
    engine: str
    command: list[str] = Field(default_factory=list)
    startup_s: float | None = None
    loaded: dict[str, Any] = Field(default_factory=dict)
    port: int | None = None


class Memory(Block):
    peak_gib: float | None = None
    gpu_peak_gib: float | None = None  # NVML, a cell served on a GPU only


class RooflineLevel(Block):
    """One closed-loop load level against its roofline (harness/predict/roofline.py): decode tok/s if the
    step were bound by streaming weights + KV from memory, or by the matmuls' FLOPs; the lower is the limit."""

    profile: str
    level: float  # concurrency: sequences decoding at once
    bandwidth_tok_s: float
    compute_tok_s: float
    limit_tok_s: float
    regime: Literal["memory-bound", "compute-bound"]
    intensity: float  # FLOPs per byte moved in one decode step
    measured_tok_s: float | None = None  # the level's output tok/s (prefill included)
    pct_of_limit: float | None = None  # measured / limit x 100


class Roofline(Block):
    """The cell's roofline on its host: the limits its artefact allows there, and each measured figure as a
    % of its limit with its regime. Filled when the cell finishes (harness/predict/roofline.roofline_of);
    `error` says why the limits are missing (no host figures, no architecture facts)."""

    bandwidth_gb_s: float | None = None  # the host figures used (harness/hw/figures.py)
    peak_tflops: float | None = None  # of `compute_dtype`'s matmuls
    compute_dtype: str | None = None  # the dtype the matmuls run in (int8 for W8A8 and GGUF k-quants on CPU)
    figures_source: str | None = None  # measured | preset | datasheet, with the figures' basis
    weight_bytes: float | None = None  # as stored and served
    streamed_bytes: float | None = None  # read per decode step: every weight but an untied embedding table
    kv_bytes_per_token: float | None = None
    flops_per_token: float | None = None  # at the load's mean context
    context_tokens: float | None = None  # mean context a decoding sequence holds (input + output / 2)
    levels: list[RooflineLevel] = Field(default_factory=list)
    prefill_tokens: int | None = None
    prefill_bandwidth_tok_s: float | None = None
    prefill_compute_tok_s: float | None = None
    prefill_limit_tok_s: float | None = None
    prefill_regime: Literal["memory-bound", "compute-bound"] | None = None
    prefill_measured_tok_s: float | None = None  # input tokens / TTFT p50 of the synchronous level
    prefill_pct_of_limit: float | None = None
    ttft_floor_ms: float | None = None  # the prefill limit as a time to first token
    error: str | None = None


class CellResult(BaseModel):
    """A cell's result on one host. `plan` is the CellPlan as planned (its JSON dump), `host` the
    harness/hw host block; the optional blocks are present once their stage produced them."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[3] = SCHEMA_VERSION
    cell_id: str
    matrix: str
    label: str
    status: Status
    failed_stage: str | None = None
    reason: str | None = None
    log_tail: str | None = None
    warnings: list[str] = Field(default_factory=list)
    plan: dict[str, Any]
    host: dict[str, Any] | None = None
    model: dict[str, Any] | None = None
    distill: dict[str, Any] | None = None
    artefact: Artefact | None = None
    serve: Serve | None = None
    perf: Perf | None = None
    memory: Memory | None = None
    quality: Quality | None = None
    shift: dict[str, Any] | None = None
    roofline: Roofline | None = None  # added in schema 3's lifetime: absent (not null) where unset
    speculative: Speculative | None = None  # a spec-decoded cell's (issue #28); absent (not null) where unset
    environment: dict[str, Any] = Field(default_factory=dict)
    timings: dict[str, float] = Field(default_factory=dict)
    started_at: str | None = None
    finished_at: str | None = None
    wall_s: float = 0.0
    logs: dict[str, Any] = Field(default_factory=dict)
    upgraded_from: int | None = None  # the schema version this result was read from, when older

    @model_serializer(mode="wrap")
    def _drop_unset_roofline(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out: dict[str, Any] = handler(self)  # a result written before the roofline block reads back as it was written
        if isinstance(out, dict):
            for name in ("roofline", "speculative"):
                if out.get(name) is None:
                    out.pop(name, None)
        return out

    @property
    def host_id(self) -> str:
        """The host id it is stored under: `unprobed` when the probe failed (harness/store/hosts.host_id_of)."""
        return str((self.host or {}).get("host_id") or UNPROBED_HOST_ID)

    @property
    def done(self) -> bool:
        return self.status == "done"

    def items(self, task: str, metric: str) -> dict[int | str, float]:
        """doc_id -> per-item score of `task`/`metric` (empty without quality, or without items: a result
        upgraded from schema 2 whose work/ samples were gone, see `upgraded_from`)."""
        return self.quality.items(task, metric) if self.quality is not None else {}

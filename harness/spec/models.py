"""Pydantic v2 models of a matrix file. Frozen, unknown fields rejected, plugins chosen by `kind`.

Validators here are pure: no file system, no network, no environment. Whether a plugin exists or a
combination can run on this host is the planner's job (harness/plan), so `validate` stays instant.
"""

from __future__ import annotations

import re
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer, model_validator

from harness.spec.drop import parse_drop
from harness.spec.workload import FixedWorkload, Workload

NAME_RE = r"^[a-z0-9][a-z0-9._-]{0,63}$"

# Precision = the numeric format the served weights end up in. Full precisions pair with method
# "none"; lower ones need a compression method (harness/plan/rules.py holds the pairing table).
Precision = Literal["fp32", "bf16", "fp16", "fp8", "int8", "int6", "int5", "int4", "int3", "int2"]
FULL_PRECISIONS = ("fp32", "bf16", "fp16")
# On the precision axis only: `auto` = the uncompressed dtype this host computes fastest (measured by the
# probe, harness/hw); the plan resolves it per host, so each cell records the dtype it really ran in.
AxisPrecision = Literal["auto", "fp32", "bf16", "fp16", "fp8", "int8", "int6", "int5", "int4", "int3", "int2"]
BITS = {"fp32": 32, "bf16": 16, "fp16": 16, "fp8": 8, "int8": 8, "int6": 6, "int5": 5, "int4": 4, "int3": 3, "int2": 2}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    # Fields added after cell ids existed: every spec dump is hashed into a cell id (harness/plan), so these
    # are left out of dumps while at their default, and adding one re-keys no cell planned before it.
    late_fields: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _drop_late_defaults(self, handler):
        out = handler(self)
        if self.late_fields and isinstance(out, dict):
            for name in self.late_fields:
                if getattr(self, name) == type(self).model_fields[name].get_default(call_default_factory=True):
                    out.pop(name, None)
        return out


# ---------------------------------------------------------------- models
class EmbeddedModel(Strict):
    """A model dqbench prepares offline from a registry package (no hub needed)."""

    kind: Literal["embedded"]
    name: Literal["smollm2-135m-instruct"] = "smollm2-135m-instruct"


class HubModel(Strict):
    """A hub id, loaded through the ordinary from_pretrained path (needs network or a warm HF cache)."""

    kind: Literal["hub"]
    id: str = Field(pattern=r"^[\w.-]+/[\w.-]+$")
    revision: str | None = None


class LocalModel(Strict):
    """A checkpoint folder on disk (config.json + weights)."""

    kind: Literal["local"]
    path: str


ModelSource = Annotated[EmbeddedModel | HubModel | LocalModel, Field(discriminator="kind")]


class ModelSpec(Strict):
    name: str = Field(pattern=NAME_RE)
    source: ModelSource
    trust_remote_code: bool = False
    # Not used to serve anything: the precision axis decides the dtype (`auto` = this host's fast one).
    # Kept, at its default only, because it is part of every existing cell id.
    dtype: Literal["bfloat16", "float16", "float32", "auto"] = "bfloat16"

    @field_validator("dtype")
    @classmethod
    def _dtype_is_the_axis(cls, v: str) -> str:
        if v != "bfloat16":
            raise ValueError(
                f"models[].dtype {v!r} is not used: set axes.precision instead (auto | bf16 | fp16 | fp32; "
                "auto = the dtype this host computes fastest)"
            )
        return v


# ---------------------------------------------------------------- compression (method axis)
class MethodSpec(Strict):
    """Options of one compression method; which precisions it supports is the plugin's to say."""

    kind: str = Field(pattern=r"^[a-z0-9_]+$")
    group_size: int | Literal["channel"] | None = None
    calibration_samples: int = Field(default=64, ge=1, le=100_000)
    calibration_seq_len: int = Field(default=256, ge=16, le=32768)
    calibration_source: str = "pydoc"
    seed: int = 0
    # Pair this method only with these precisions (others are not cells): lets one matrix hold
    # "int8 via SmoothQuant" and "int4 via GPTQ" without a grid of meaningless combinations.
    precisions: list[Precision] | None = None
    # Modules kept in full precision (mixed precision): llm-compressor `ignore` patterns.
    ignore: list[str] = Field(default_factory=lambda: ["lm_head"])
    options: dict[str, str | int | float | bool | list[str]] = Field(default_factory=dict)

    @field_validator("group_size")
    @classmethod
    def _group(cls, v):
        if isinstance(v, int) and (v <= 0 or v & (v - 1)):
            raise ValueError(f"group_size must be a power of two or 'channel', got {v}")
        return v


# ---------------------------------------------------------------- distillation (distill axis)
class PruneStudent(Strict):
    kind: Literal["prune"]
    keep_every: int = Field(default=2, ge=2, le=16)


StudentModel = Annotated[PruneStudent | HubModel | LocalModel, Field(discriminator="kind")]


class CostAssumptions(Strict):
    """What a training run's GPU-hours and cost estimate assumes (harness/distill/cost.py states the formula)."""

    gpu: str = "H100-SXM"
    peak_tflops: float = Field(default=989.0, gt=0, description="dense bf16 peak of that GPU")
    mfu: float = Field(default=0.4, gt=0, le=1, description="model FLOPs utilisation a tuned run reaches")
    usd_per_gpu_hour: float = Field(default=2.5, ge=0)
    # the same recipe at a real size: teacher config from harness/models/arch.py KNOWN, student pruned alike
    reference_teacher: str = "meta-llama/Llama-3.1-8B-Instruct"
    reference_tokens: int = Field(default=1_000_000_000, ge=1, description="tokens a real distillation run sees")


class _StudentBase(Strict):
    name: str = Field(pattern=NAME_RE)
    student: StudentModel
    # Compression methods this student is crossed with (its quantized cells); None: every method on the
    # axis. Lets a matrix ask "and the KD student in W8A8" without a full grid of student cells.
    methods: list[str] | None = None


class UntrainedStudent(_StudentBase):
    """The student as derived from the teacher, before any training: the floor every method must beat."""

    kind: Literal["untrained"]


class _TrainedStudent(_StudentBase):
    # Budget: training stops at the first bound reached (the record says which). Give students that are
    # compared the same max_steps/max_tokens; max_minutes is a safety cap, not a fair budget.
    max_steps: int | None = Field(default=None, ge=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_minutes: float | None = Field(default=None, gt=0)
    batch_size: int = Field(default=4, ge=1)
    seq_len: int = Field(default=256, ge=16)
    learning_rate: float = Field(default=1e-4, gt=0)
    warmup_steps: int = Field(default=5, ge=0)
    weight_decay: float = Field(default=0.0, ge=0)
    seed: int = 0
    # Training text: LAMBADA passages held out from the dq_lambada split (documents >= 2500) interleaved
    # with the docstrings of Python's standard library. Never pydoc: the perplexity and shift windows
    # come from pydoc, and training on them would flatter every student.
    train_corpus: Literal["mixed"] = "mixed"
    cost: CostAssumptions = Field(default_factory=CostAssumptions)
    # What training holds in memory (harness/distill/memory.py estimates it at plan time; the worker,
    # harness/workers/distill.py, honours each). weights_dtype bf16: student and teacher weights in bf16,
    # updated by the 8-bit optimizer with stochastic rounding (small updates are not lost to bf16's
    # resolution); adamw_8bit: torchao's AdamW8bit (block-wise 8-bit moments, about 2 bytes per parameter
    # instead of 8); gradient_checkpointing: each layer's activations are recomputed in the backward pass
    # (only the layer inputs are kept). Defaults are fp32 master weights, torch AdamW, no checkpointing.
    weights_dtype: Literal["fp32", "bf16"] = "fp32"
    optimizer: Literal["adamw", "adamw_8bit"] = "adamw"
    gradient_checkpointing: bool = False

    @model_validator(mode="after")
    def _bounded(self):
        if self.max_steps is None and self.max_tokens is None and self.max_minutes is None:
            raise ValueError(
                f"students[{self.name}]: a training run needs a bound; set max_steps or max_tokens "
                "(max_minutes is a safety cap)"
            )
        if self.weights_dtype == "bf16" and self.optimizer != "adamw_8bit":
            raise ValueError(
                f"students[{self.name}]: weights_dtype bf16 needs optimizer adamw_8bit (its stochastic "
                "rounding keeps updates smaller than bf16's resolution; plain AdamW on bf16 weights loses them)"
            )
        return self


class LogitKD(_TrainedStudent):
    """loss = alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE. alpha: 0 is the cross-entropy
    control (no teacher at all), 1 is pure distillation."""

    kind: Literal["logit_kd"]
    temperature: float = Field(default=2.0, gt=0)
    alpha: float = Field(default=0.5, ge=0, le=1)
    # teacher logits kept per position: the top-k plus the rest of the mass as one bucket, cached on disk
    # and reused across students and runs; 0 = full logits from a live teacher forward every step
    top_k: int = Field(default=64, ge=0, le=4096)
    # Feature distillation: + feature_weight * mean normalised MSE between student layer outputs and the
    # teacher layers they are mapped to (through a learned linear projection where widths differ).
    # Map student layer -> teacher layer; default: a pruned student's layer i <- the teacher layer it was
    # copied from, any other student evenly spread over the teacher's depth.
    feature_weight: float = Field(default=0.0, ge=0)
    feature_layers: dict[int, int] | None = None


class _GenerativeStudent(_TrainedStudent):
    # open-domain questions (TriviaQA rc.wikipedia.nocontext + NQ-open validation questions, interleaved):
    # no evaluated task draws on them
    prompts: Literal["open_qa"] = "open_qa"
    num_prompts: int = Field(default=256, ge=1, le=100_000)
    max_new_tokens: int = Field(default=128, ge=1)
    # the teacher's generations (served by vLLM) are greedy by default: one deterministic target per prompt
    generation_temperature: float = Field(default=0.0, ge=0)


class SFTStudent(_GenerativeStudent):
    """Sequence-level KD: the teacher answers a prompt set, the student is fine-tuned on the answers
    (TRL SFTTrainer)."""

    kind: Literal["sft"]


class GKDStudent(_GenerativeStudent):
    """On-policy generalized KD (TRL GKDTrainer): with probability lmbda the student's own samples, else the
    teacher's answers; loss = generalized JSD(beta) between teacher and student at `temperature`."""

    kind: Literal["gkd"]
    lmbda: float = Field(default=0.5, ge=0, le=1)
    beta: float = Field(default=0.5, ge=0, le=1)
    temperature: float = Field(default=0.9, gt=0)
    on_policy_max_new_tokens: int = Field(default=64, ge=1)


DistillSpec = Annotated[UntrainedStudent | LogitKD | SFTStudent | GKDStudent, Field(discriminator="kind")]


# ---------------------------------------------------------------- axes
class Axes(Strict):
    precision: list[AxisPrecision] = Field(default_factory=lambda: list[AxisPrecision](["bf16"]), min_length=1)
    method: list[str] = Field(default_factory=lambda: ["none"], min_length=1)
    distill: list[str] = Field(default_factory=lambda: ["none"], min_length=1)

    @field_validator("precision", "method", "distill")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        dup = sorted({x for x in v if v.count(x) > 1})
        if dup:
            raise ValueError(f"duplicate entries {dup}")
        return v


# ---------------------------------------------------------------- serving
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
    }
)


def _refuse_managed(args: dict, managed: frozenset[str], prefixes: bool) -> dict:
    """Refuse engine flags dqbench sets itself. With `prefixes` (vLLM: argparse takes any unique prefix of an
    option as that option) a key that abbreviates a managed flag is refused too: `hos` would reach vLLM as
    --host. Whether the other keys are real options is checked against the engine's own parser at plan
    time (harness/plan/engine_args.py)."""
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
    def _no_managed(cls, v: dict) -> dict:
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
    def _no_managed(cls, v: dict) -> dict:
        # llama.cpp's own parser matches flags exactly (common/arg.cpp), so abbreviations are not a way in
        return _refuse_managed(v, LLAMACPP_MANAGED, prefixes=False)


Serving = Annotated[VLLMServing | LlamaCppServing, Field(discriminator="kind")]
SERVING_DEFAULTS = {"vllm": VLLMServing, "llamacpp": LlamaCppServing}


# ---------------------------------------------------------------- load
# Bounds on load parameters: a matrix that cannot finish, or that no load generator or engine can serve,
# is refused when it is read rather than discovered hours into a run.
# A level may take at most a day of arrivals (poisson) or of waiting on one request (request_timeout_s).
MAX_LEVEL_S = 24 * 3600
# Open connections of one load level. Every engine here queues far below it (vLLM's max_num_seqs default is
# at most 1024, llama-server has at most 256 slots), and one load-generator process needs a socket per
# connection: beyond a few thousand it meets the usual file-descriptor limits, not the server's.
MAX_CONCURRENCY = 4096
# Prompt and output lengths: the plan checks them against each cell's context (harness/plan/rules.py);
# this bound only keeps a typo (an extra zero or three) from reaching that check as a number of tokens
# no released model takes.
MAX_TOKENS = 1 << 20


# `repeats`: run the level this many times (fresh prompts each time) and report the spread of its figures
# (harness/measure/repeats.py). A late field: left out of dumps at 1, so no cell planned before it is re-keyed.
MAX_REPEATS = 100


class SynchronousProfile(Strict):
    kind: Literal["synchronous"]
    requests: int = Field(default=8, ge=1, le=100_000)
    repeats: int = Field(default=1, ge=1, le=MAX_REPEATS)
    late_fields: ClassVar[tuple[str, ...]] = ("repeats",)


class ConcurrencyProfile(Strict):
    kind: Literal["concurrency"]
    levels: list[int] = Field(min_length=1)
    requests: int = Field(default=32, ge=1, le=100_000)
    repeats: int = Field(default=1, ge=1, le=MAX_REPEATS)
    late_fields: ClassVar[tuple[str, ...]] = ("repeats",)

    @field_validator("levels")
    @classmethod
    def _levels(cls, v: list[int]) -> list[int]:
        bad = [x for x in v if not 1 <= x <= MAX_CONCURRENCY]
        if bad:
            raise ValueError(
                f"concurrency levels must be 1..{MAX_CONCURRENCY} (open connections of one level; "
                f"every engine here queues long before that); out of range: {bad}"
            )
        return sorted(set(v))


class PoissonProfile(Strict):
    kind: Literal["poisson"]
    rate: float = Field(gt=0, le=100_000, description="requests per second")
    requests: int = Field(default=32, ge=1, le=100_000)
    seed: int = 0
    repeats: int = Field(default=1, ge=1, le=MAX_REPEATS)
    late_fields: ClassVar[tuple[str, ...]] = ("repeats",)

    @model_validator(mode="after")
    def _finishes(self):
        # the arrivals alone last requests / rate seconds on average: a rate of 0.0001 is 3 days for 32 requests
        n = self.requests * self.repeats
        if n / self.rate > MAX_LEVEL_S:
            raise ValueError(
                f"rate: got {self.rate:g}; {n} requests at {self.rate:g}/s arrive over "
                f"{n / self.rate / 3600:.1f} h, more than the {MAX_LEVEL_S // 3600} h a level "
                f"may take: set rate >= {n / MAX_LEVEL_S:.4g} or fewer requests"
            )
        return self


class SweepProfile(Strict):
    """GuideLLM's sweep (guidellm/benchmark/profiles.py, SweepProfile): a synchronous baseline, a
    maximum-throughput level (every request at once, at most `max_concurrency` in flight), then `rates`
    open-loop levels at rates evenly spaced from the baseline's rate to the maximum's (the last one is the
    maximum itself), each judged for saturation; once one saturates, the higher ones are skipped
    (harness/measure/sweep.py). Every level sends `requests` requests (`repeats` runs of them), except that
    a rate level sends no more than its rate allows in `max_level_s` seconds of arrivals."""

    kind: Literal["sweep"]
    rates: int = Field(default=4, ge=1, le=32, description="open-loop rates between synchronous and maximum")
    requests: int = Field(default=16, ge=6, le=100_000, description="per level; 6 at least: thirds of 2")
    max_concurrency: int = Field(default=16, ge=1, le=MAX_CONCURRENCY, description="of the maximum level")
    arrival: Literal["constant", "poisson"] = "constant"
    seed: int = 0  # poisson arrivals: the draw of the gaps (rate level k uses seed + k)
    max_level_s: float = Field(default=120.0, gt=0, le=MAX_LEVEL_S, description="arrival span of a rate level")
    # saturation (harness/measure/sweep.py): completions per second below this share of the target rate ...
    min_achieved: float = Field(default=0.9, gt=0.0, le=1.0)
    # ... or the median TTFT of the level's last third this many times its first third's (queues growing)
    ttft_growth: float = Field(default=2.0, gt=1.0, le=1000.0)
    repeats: int = Field(default=1, ge=1, le=MAX_REPEATS)

    @model_validator(mode="after")
    def _throughput_level_fills(self) -> "SweepProfile":
        if self.requests < self.max_concurrency:
            raise ValueError(
                f"requests: got {self.requests}; the maximum-throughput level sends `requests` requests at "
                f"most {self.max_concurrency} at a time (max_concurrency), so it never reaches that "
                f"concurrency: set requests >= {self.max_concurrency} or max_concurrency <= {self.requests}"
            )
        return self

    def level_count(self) -> int:
        """The most levels it runs: synchronous, maximum, then its rates (fewer once one saturates)."""
        return 2 + self.rates

    def prompt_count(self) -> int:
        """The most requests it sends (rate levels may send fewer: max_level_s)."""
        return self.requests * self.repeats * self.level_count()


LoadProfile = Annotated[
    SynchronousProfile | ConcurrencyProfile | PoissonProfile | SweepProfile, Field(discriminator="kind")
]


class MaxFailed(Strict):
    """The fraction of a load level's requests that may fail before the cell fails at `measure`.

    One user's requests on an idle server should all succeed; under load a few time-outs are tolerated.
    """

    synchronous: float = Field(default=0.0, ge=0.0, le=1.0)
    other: float = Field(default=0.05, ge=0.0, le=1.0, description="concurrency and poisson levels")


_DURATION_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ms|s)?\s*$")


class SLO(Strict):
    """Latency objectives a request must meet to count towards goodput, as `vllm bench serve --goodput`
    defines it: a completed request is good when its TTFT, TPOT and end-to-end latency are each at most the
    objective given (a request of one output token has TPOT 0). Values in milliseconds: a number, or a
    string with its unit ("500ms", "0.5s"). `percentile`: a level meets the SLO when at least this share of
    its requests (in %) are good -- DistServe's attainment target. It changes no request sent, only figures
    derived from them (harness/measure/slo.py)."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2e_ms: float | None = None
    percentile: float = 90.0

    @field_validator("ttft_ms", "tpot_ms", "e2e_ms", mode="before")
    @classmethod
    def _ms(cls, v: object) -> object:
        if v is None:
            return None
        fix = 'a latency bound above 0: milliseconds as a number (500) or with a unit ("500ms", "0.5s")'
        if isinstance(v, bool):
            raise ValueError(fix)
        if isinstance(v, str):
            m = _DURATION_RE.match(v)
            if not m:
                raise ValueError(fix)
            v = float(m.group(1)) * (1000.0 if m.group(2) == "s" else 1.0)
        if not isinstance(v, int | float) or not 0 < v <= MAX_LEVEL_S * 1000:
            raise ValueError(fix)
        return float(v)

    @field_validator("percentile", mode="before")
    @classmethod
    def _percentile(cls, v: object) -> object:
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v <= 100:
            raise ValueError(
                "the share of a level's requests (in %) that must meet every objective, in (0, 100]: "
                "e.g. percentile: 90"
            )
        return float(v)

    @model_validator(mode="after")
    def _some(self) -> "SLO":
        if self.ttft_ms is None and self.tpot_ms is None and self.e2e_ms is None:
            raise ValueError("no objective set: give at least one of ttft_ms, tpot_ms, e2e_ms, or remove `slo`")
        return self


class LoadSpec(Strict):
    input_tokens: int = Field(default=128, ge=1, le=MAX_TOKENS)
    output_tokens: int = Field(default=64, ge=1, le=MAX_TOKENS)
    warmup_requests: int = Field(default=2, ge=0, le=1000)
    request_timeout_s: float = Field(default=300, gt=0, le=MAX_LEVEL_S)
    corpus: Literal["pydoc"] = "pydoc"
    seed: int = 0
    profiles: list[LoadProfile] = Field(min_length=1)
    max_failed: MaxFailed = Field(default_factory=MaxFailed)
    # Figures derived from the same requests (docs/metrics.md#load-levels): goodput under `slo`, the steady
    # window (the first and last `steady_trim` of each level's wall time left out, as GuideLLM's warmup and
    # cooldown percent), and the noise flag of repeated levels (coefficient of variation above `noisy_cv`).
    slo: SLO | None = None
    steady_trim: float = Field(default=0.1, ge=0.0, lt=0.5)
    noisy_cv: float = Field(default=0.1, gt=0.0)
    # what the requests look like (harness/spec/workload.py): fixed lengths, a shared prefix, chat, drawn lengths
    workload: Workload = Field(default_factory=FixedWorkload)
    late_fields: ClassVar[tuple[str, ...]] = ("max_failed", "slo", "steady_trim", "noisy_cv", "workload")

    @model_validator(mode="after")
    def _workload_fits(self) -> "LoadSpec":
        self.workload.check(self.input_tokens, self.output_tokens)
        return self

    @model_validator(mode="after")
    def _one_sweep(self) -> "LoadSpec":
        # a result holds one sweep's findings (harness/result.Perf.sweep)
        sweeps = [i for i, p in enumerate(self.profiles) if p.kind == "sweep"]
        if len(sweeps) > 1:
            raise ValueError(
                f"profiles: {len(sweeps)} sweep profiles (at {sweeps}); a cell runs at most one sweep: keep one, "
                "and give it more `rates` if it needs more levels"
            )
        return self


# ---------------------------------------------------------------- evaluation
class TaskSpec(Strict):
    """One lm-eval task, group or tag by its registry name (`arc_challenge`, `mmlu`, `mmlu_stem`, `gsm8k`)
    or one of dqbench's own `dq_*` tasks. Offline, lm-eval's tasks read data packaged on PyPI
    (harness/evaluate/catalog.py); with hub access any registry task runs."""

    name: str = Field(pattern=r"^[a-z0-9_][a-z0-9_\-]*$")
    limit: int | None = Field(default=None, ge=1, description="first N documents (per subtask of a group)")
    # None: the task's own default (gsm8k 5, gsm8k_cot 8 fixed exemplars, most MC tasks 0). A number
    # overrides it for every subtask; lm-eval's effective count is stored with the score.
    num_fewshot: int | None = Field(default=None, ge=0, le=25)
    late_fields: ClassVar[tuple[str, ...]] = ("num_fewshot",)

    @model_validator(mode="after")
    def _dq_tasks_are_zero_shot(self) -> "TaskSpec":
        # dqbench's own tasks have no few-shot examples: their default is 0, written out as before (ids of
        # cells planned when 0 was every task's default stay the same)
        if self.name.startswith("dq_") and self.num_fewshot is None:
            object.__setattr__(self, "num_fewshot", 0)
        return self


class ShiftSpec(Strict):
    """Distribution shift against the reference on fixed token windows (KL, top-1 agreement, delta-p)."""

    windows: int = Field(default=16, ge=1, le=10_000)
    tokens: int = Field(default=256, ge=8, le=8192)
    top_k: int = Field(default=20, ge=1, le=20, description="vLLM's default --max-logprobs is 20")
    corpus: Literal["pydoc"] = "pydoc"
    seed: int = 7
    bootstrap_iters: int = Field(default=2000, ge=100)


class LMEvalSpec(Strict):
    kind: Literal["lm_eval"] = "lm_eval"
    tasks: list[TaskSpec] = Field(min_length=1)
    shift: ShiftSpec | None = Field(default_factory=ShiftSpec, description="null turns the analysis off")
    num_concurrent: int = Field(default=8, ge=1, le=256)
    # lm-eval reads max length from the model config (8192 for SmolLM2): rolling perplexity
    # then builds huge windows. Capped on purpose.
    max_length: int = Field(default=1024, ge=64)
    batch_size: int = Field(default=1, ge=1)
    seed: int = 1234
    # Chat formatting of the prompts (lm-eval's simple_evaluate options of the same names): the model's
    # chat template, few-shot examples as alternating turns, an optional system message.
    apply_chat_template: bool = False
    fewshot_as_multiturn: bool = False
    system_instruction: str | None = None
    # Overrides of generative tasks' generation_kwargs (lm-eval's `--gen_kwargs`), e.g. {max_gen_toks: 256}.
    gen_kwargs: dict[str, str | int | float | bool] = Field(default_factory=dict)
    # A drop to resolve, written like the advisor's --max-drop ("2%" of the reference's score, or "1.5pt"):
    # `harness plan` warns per task when its items cannot detect it (harness/plan/power.py). It changes
    # nothing that is measured, so it is no part of a cell's id (harness/plan/planner.py leaves it out).
    resolve_drop: str | None = None
    late_fields: ClassVar[tuple[str, ...]] = (
        "apply_chat_template",
        "fewshot_as_multiturn",
        "system_instruction",
        "gen_kwargs",
        "resolve_drop",
    )

    @field_validator("resolve_drop", mode="before")
    @classmethod
    def _drop(cls, v: object) -> str | None:
        return None if v is None else str(parse_drop(v))

    @model_validator(mode="after")
    def _multiturn_needs_template(self) -> "LMEvalSpec":
        if self.fewshot_as_multiturn and not self.apply_chat_template:
            raise ValueError(
                "fewshot_as_multiturn: true needs apply_chat_template: true (few-shot turns are chat messages)"
            )
        return self

    @field_validator("tasks")
    @classmethod
    def _unique_tasks(cls, v: list[TaskSpec]) -> list[TaskSpec]:
        names = [t.name for t in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate tasks {dup}")
        return v


Evaluation = Annotated[LMEvalSpec, Field(discriminator="kind")]


class HardwareSpec(Strict):
    device: Literal["cpu", "cuda", "auto"] = "auto"
    memory_gib: float | None = Field(default=None, gt=0, description="budget the plan checks cells against")


_UNITS = re.compile(r"^\d+(\.\d+)?$")

# No time limit may exceed a week: past that a run is stuck, not slow.
MAX_LIMIT_S = 7 * 24 * 3600


class Limits(Strict):
    """Wall-clock limits of a cell's stages, read by the cell executor (harness/cell/).

    Not part of any cell's identity: a limit decides whether a measurement finishes, not what it measures,
    so changing one re-runs nothing (harness/plan/planner.py keeps it out of the id)."""

    cell_deadline_s: float | None = Field(
        default=None, gt=0, le=MAX_LIMIT_S, description="the whole cell, every stage; None: no overall deadline"
    )
    evaluate_timeout_s: float = Field(default=6 * 3600, gt=0, le=MAX_LIMIT_S, description="the lm-eval stage")
    shift_timeout_s: float = Field(
        default=2 * 3600, gt=0, le=MAX_LIMIT_S, description="the logprob dumps of the shift comparison"
    )


class Matrix(Strict):
    schema_version: Literal[1] = 1
    name: str = Field(pattern=NAME_RE)
    description: str = ""
    models: list[ModelSpec] = Field(min_length=1)
    axes: Axes = Field(default_factory=Axes)
    methods: dict[str, MethodSpec] = Field(default_factory=dict)
    students: list[DistillSpec] = Field(default_factory=list)
    serving: Serving = Field(default_factory=VLLMServing)
    # Settings for the other engines some methods need (GGUF cells are served by llama.cpp); an engine
    # not listed here runs with its defaults. Each cell records the engine that served it.
    extra_serving: list[Serving] = Field(default_factory=list)
    load: LoadSpec
    evaluation: Evaluation
    hardware: HardwareSpec = Field(default_factory=HardwareSpec)
    limits: Limits = Field(default_factory=Limits)
    late_fields: ClassVar[tuple[str, ...]] = ("limits",)

    @model_validator(mode="after")
    def _references(self) -> "Matrix":
        names = [m.name for m in self.models]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"models: duplicate names {dup}")
        for m in self.axes.method:
            if m != "none" and m not in self.methods:
                raise ValueError(
                    f"axes.method: {m!r} has no entry under `methods:`; add `methods: {{{m}: {{kind: ...}}}}` "
                    f"or remove it (defined: {sorted(self.methods) or 'none'})"
                )
        kinds = [self.serving.kind] + [s.kind for s in self.extra_serving]
        if len(set(kinds)) != len(kinds):
            raise ValueError(f"extra_serving: one entry per engine kind, got {kinds}")
        student_names = [s.name for s in self.students]
        dup = sorted({n for n in student_names if student_names.count(n) > 1})
        if dup:
            raise ValueError(
                f"students: duplicate names {dup}; each student needs its own name (axes.distill "
                "picks students by name)"
            )
        for d in self.axes.distill:
            if d != "none" and d not in student_names:
                raise ValueError(
                    f"axes.distill: {d!r} is not a student under `students:` (defined: {student_names or 'none'})"
                )
        for s in self.students:
            for m in s.methods or []:
                if m not in self.methods:
                    raise ValueError(
                        f"students[{s.name}].methods: {m!r} has no entry under `methods:` "
                        f"(defined: {sorted(self.methods) or 'none'})"
                    )
        return self

    def serving_for(self, engine: str) -> VLLMServing | LlamaCppServing:
        """The serving spec for `engine`: `serving`, an `extra_serving` entry, or that engine's defaults."""
        for s in (self.serving, *self.extra_serving):
            if s.kind == engine:
                return s
        return SERVING_DEFAULTS[engine]()

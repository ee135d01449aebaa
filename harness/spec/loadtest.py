"""The load test (`load:`): profiles (synchronous, concurrency, poisson, sweep), the workload, failure bounds and
the SLO, with bounds that refuse a matrix no load generator or engine could finish."""

from __future__ import annotations

import re
from typing import Annotated, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from harness.spec.base import Strict
from harness.spec.workload import FixedWorkload, Workload

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

"""The user's constraints, parsed and validated once: malformed values are one clear error each."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from advisor.slo import AskedSLO
from advisor.verdict import DECIDE

OBJECTIVES = ("throughput", "latency", "cost", "memory", "quality", "goodput", "cost-per-correct")


class AdvisorInputError(ValueError):
    """A constraint the user typed is malformed; the message names the flag, the value and the fix."""

    exit_code = 2


@dataclass(frozen=True)
class MaxDrop:
    """A tolerated quality drop: relative (`2%` of the reference's score) or absolute (`1.5pt`)."""

    value: float  # fraction for relative (0.02), points for absolute (1.5)
    relative: bool

    def __str__(self) -> str:
        return f"{self.value * 100:g}% relative" if self.relative else f"{self.value:g} points absolute"


def parse_max_drop(text: str) -> MaxDrop:
    t = text.strip().lower()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(%|pt|pts|points?)", t)
    if not m:
        raise AdvisorInputError(
            f"--max-drop {text!r}: use a relative drop like '2%' or absolute points like "
            f"'1.5pt' (percentage points for accuracies, metric units otherwise)"
        )
    v = float(m.group(1))
    if not math.isfinite(v):  # 400 digits read as inf
        raise AdvisorInputError(f"--max-drop {text!r}: expected a finite drop like '2%' or '1.5pt'")
    if m.group(2) == "%":
        if v >= 100:
            raise AdvisorInputError(f"--max-drop {text!r}: a relative drop must be below 100%")
        return MaxDrop(v / 100.0, True)
    return MaxDrop(v, False)


def parse_count(flag: str, text: str | int) -> int:
    """A whole number > 0 that has a default (never None): --top, --concurrency, --context-len."""
    return int(_positive(flag, text, integer=True))


def parse_positive(flag: str, text: str | float | None) -> float | None:
    """A finite number > 0, or None when the flag was not given."""
    return None if text is None else _positive(flag, text, integer=False)


def _positive(flag: str, text: str | float, integer: bool) -> float:
    try:
        v = int(text) if integer else float(text)
    except (TypeError, ValueError):
        kind = "a whole number" if integer else "a number"
        raise AdvisorInputError(f"{flag} {text!r}: expected {kind}") from None
    if not math.isfinite(v):  # float() reads 'nan' and 'inf', which would pass or fail every comparison
        raise AdvisorInputError(f"{flag} {text!r}: expected a finite number greater than 0, e.g. {flag} 24")
    if v <= 0:
        raise AdvisorInputError(f"{flag} {text!r}: must be greater than 0")
    return v


_MS = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?\s*(ms|s)?")


def parse_ms(flag: str, text: str | float | None) -> float | None:
    """A latency bound in milliseconds: '500ms', '0.5s', or a bare number of milliseconds (None: not given)."""
    if text is None:
        return None
    t = str(text).strip().lower()
    m = _MS.fullmatch(t)
    fix = f"{flag} {text!r}: expected a latency above 0 like '500ms' or '0.5s' (a bare number is milliseconds)"
    if not m:
        raise AdvisorInputError(fix)
    v = float(t.removesuffix("ms").removesuffix("s").strip()) * (1000.0 if m.group(2) == "s" else 1.0)
    if not math.isfinite(v) or v <= 0:
        raise AdvisorInputError(fix)
    return v


def parse_percent(flag: str, text: str | float) -> float:
    """A share of requests in % within (0, 100]: '90', '90%', '99.9'."""
    t = str(text).strip().removesuffix("%").strip()
    try:
        v = float(t)
    except ValueError:
        v = math.nan
    if not math.isfinite(v) or not 0 < v <= 100:
        raise AdvisorInputError(f"{flag} {text!r}: expected a share of requests in % within (0, 100], e.g. 90")
    return v


@dataclass(frozen=True)
class Constraints:
    vram_gib: float | None = None
    max_drop: MaxDrop | None = None
    task: str | None = None  # None: the default aggregate (see query.AGGREGATE)
    metric: str | None = None
    tasks: tuple[str, ...] | None = None  # the aggregate over these tasks only (`--tasks`); None: every task
    context_len: int = 4096
    concurrency: int = 1
    min_tok_s: float | None = None
    max_ttft_ms: float | None = None
    ttft_stat: str = "p99"
    objective: str = "throughput"
    gpu_price: float | None = None  # $/hour
    # $/hour of the whole host (cost per correct answer, advisor/cost.py); else --gpu-price, else the matrix's
    price_per_hour: float | None = None
    model: str | None = None
    # how a drop whose 95% CI straddles --max-drop counts (advisor/verdict.py): conservative = only cells
    # whose whole CI is within fit; point = undecided cells whose point estimate is within are ranked too
    decide: str = "conservative"
    device: str = "gpu"  # what the memory budget is for: gpu (device memory) or cpu (host RAM)
    top: int = 5
    # a latency SLO (ms) and the goodput (good requests/s) some measured level must reach under it
    # (advisor/slo.py): --slo-ttft, --slo-tpot, --slo-e2e, --slo-percentile, --min-goodput
    slo_ttft_ms: float | None = None
    slo_tpot_ms: float | None = None
    slo_e2e_ms: float | None = None
    slo_percentile: float = 90.0
    min_goodput: float | None = None

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise AdvisorInputError(f"--objective {self.objective!r}: choose one of {', '.join(OBJECTIVES)}")
        if self.objective == "cost" and self.gpu_price is None:
            raise AdvisorInputError("--objective cost needs --gpu-price (dollars per GPU-hour)")
        if self.objective == "cost-per-correct" and self.metric is not None:
            from advisor.cost import is_accuracy

            if not is_accuracy(self.metric):
                raise AdvisorInputError(
                    f"--objective cost-per-correct counts correct answers: --metric {self.metric} is not an accuracy "
                    "(use acc, acc_norm or exact_match, or leave --task/--metric out for the default aggregate)"
                )
        if self.ttft_stat not in ("p50", "p99"):
            raise AdvisorInputError(f"--ttft-stat {self.ttft_stat!r}: choose p50 or p99")
        if self.device not in ("gpu", "cpu"):
            raise AdvisorInputError(f"--device {self.device!r}: choose gpu or cpu")
        if (self.task is None) != (self.metric is None):
            raise AdvisorInputError(
                "--task and --metric go together (e.g. --task dq_arc_easy --metric acc); "
                "leave both out for the default aggregate"
            )
        if self.tasks and self.task is not None:
            raise AdvisorInputError("--tasks (an aggregate over some tasks) and --task (one task) exclude each other")
        if self.top < 1:
            raise AdvisorInputError(f"--top {self.top}: must be at least 1")
        if self.decide not in DECIDE:
            raise AdvisorInputError(f"--decide {self.decide!r}: choose {' or '.join(DECIDE)}")
        if self.slo is None and self.min_goodput is not None:
            raise AdvisorInputError(
                f"--min-goodput {self.min_goodput:g} counts requests that meet a latency SLO: give one with "
                "--slo-ttft, --slo-tpot or --slo-e2e (e.g. --slo-ttft 500ms --min-goodput 2)"
            )
        if self.slo is None and self.objective == "goodput":
            raise AdvisorInputError("--objective goodput needs a latency SLO: --slo-ttft, --slo-tpot or --slo-e2e")

    @property
    def slo(self) -> AskedSLO | None:
        """The asked latency SLO (None: no --slo-* bound given)."""
        if self.slo_ttft_ms is None and self.slo_tpot_ms is None and self.slo_e2e_ms is None:
            return None
        return AskedSLO(self.slo_ttft_ms, self.slo_tpot_ms, self.slo_e2e_ms, self.slo_percentile)

    @property
    def conservative(self) -> bool:
        """Drops are judged by the upper end of their 95% CI (the default, `--decide conservative`)."""
        return self.decide == "conservative"

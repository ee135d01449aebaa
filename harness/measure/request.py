"""One request as the load generator saw it: `RequestRecord`, the one per-request record from the client
(harness/measure/loadgen.py fills it while the answer streams) to the level's figures
(harness/measure/level.py, slo.py, steady.py, sweep.py read it), and the figures derived from it, each
defined here once: end-to-end latency, TPOT, scheduling lag and the arrival time of each streamed chunk.

Definitions follow vLLM's serving benchmark (vllm/benchmarks/serve.py): TTFT = first streamed token -
request sent; ITL = the gaps between streamed chunks; TPOT = (e2e - TTFT) / (output tokens - 1).
Times are time.perf_counter() seconds; every latency is measured from `start`.

Why a slotted dataclass and not a pydantic model with computed fields (GuideLLM's GenerativeRequestStats):
the record is written on the client's hot path, once per streamed chunk (`ttft`, `chunks`, `itl`), and a
pydantic model's every attribute assignment goes through BaseModel.__setattr__. Measured with
loadgen._handle_event, process CPU time on one core of a 2-core AMD EPYC (AVX-512) shared with
other jobs, best of 9 (a record built as _send builds it, one answer read, end and ok set): 16 token chunks
24-30 us as this dataclass (as before it moved here), 35-38 us as a BaseModel with computed fields; 128
chunks 155-184 us against 211-222 us -- about 0.45 us more per chunk, +20-40 % of what the client spends
reading an answer (and 3-4 % of all its CPU per request, 230-360 us by bench/loadgen_overhead.py at
1000 req/s there), for nothing the record needs: it never crosses a process boundary and is never
stored (the stored figures are harness/result.Level's, a pydantic model, built once per level). Its
derived figures are properties, computed where they are read.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class RequestRecord:
    ok: bool
    start: float  # when the request was sent: its clock starts here
    end: float  # when its answer ended (or it failed)
    ttft: float | None = None  # seconds to the first streamed token; None: no token came
    itl: list[float] = field(default_factory=list)  # the gaps between streamed chunks, in order
    prompt_tokens: int = 0
    output_tokens: int = 0
    chunks: int = 0  # streamed chunks that carried a decoding step
    error: str | None = None
    stale: bool = False  # failed on a pooled connection before any response: safe to send again
    retried: bool = False
    abandoned: bool = False  # never sent, or cut off, because the server stopped serving
    scheduled: float | None = None  # when an open-loop (poisson, constant) profile meant to send it
    turn: int = 0  # a chat conversation's turn (1-based); 0 outside one
    cached_tokens: int | None = None  # prompt tokens the engine took from its prefix cache, where it says
    # past a run's bound on kept gaps (harness/measure/itl_budget.py): `itl` is a sample of them, these are
    # their exact count and sum; None while `itl` holds every gap
    itl_n: int | None = None
    itl_sum: float = 0.0

    @property
    def e2e(self) -> float:
        """End-to-end latency (s)."""
        return self.end - self.start

    @property
    def tpot(self) -> float | None:
        """Time per output token after the first (s); None without a first token or a second one."""
        if self.ttft is None or self.output_tokens < 2:
            return None
        return (self.e2e - self.ttft) / (self.output_tokens - 1)

    @property
    def schedule_lag(self) -> float | None:
        """How late an open-loop request started after its scheduled send time (s); None when it had none,
        or when its start is not its send (abandoned: never sent; retried: its clock restarted)."""
        if self.scheduled is None or self.abandoned or self.retried:
            return None
        return self.start - self.scheduled

    def chunk_times(self) -> list[float]:
        """When each streamed chunk arrived: start + TTFT + the running sum of the ITLs (empty without a
        first token). A record that keeps a sample of its gaps (harness/measure/itl_budget.py) spreads its
        chunks evenly over the same span: the first at its first token, the last where its gaps sum to."""
        if self.ttft is None:
            return []
        t = self.start + self.ttft
        if self.itl_n is not None:
            step = self.itl_sum / self.itl_n if self.itl_n else 0.0
            return [t + i * step for i in range(self.itl_n + 1)]
        out = [t]
        for gap in self.itl:
            t += gap
            out.append(t)
        return out

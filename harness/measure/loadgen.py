"""The project's async load generator: streaming /v1/completions under synchronous, fixed-concurrency
and Poisson-arrival profiles; per-request TTFT, ITL, TPOT and end-to-end latency.

Definitions follow vLLM's serving benchmark so the two can be compared (bench/vs_vllm_bench.py):
TTFT = first streamed token - request sent; ITL = gaps between streamed chunks; TPOT = (e2e - TTFT) /
(output tokens - 1); throughput = total output tokens / (last completion - first request).

A `stop` callback (the server's health check) is polled while a level runs: once it answers, requests
in flight are cut off and the rest are never sent (counted as `abandoned`), so a dead server fails fast
instead of receiving the whole remaining load.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import aiohttp

from harness.measure.stats import summarize


@dataclass
class RequestRecord:
    ok: bool
    start: float
    end: float
    ttft: float | None = None
    itl: list[float] = field(default_factory=list)
    prompt_tokens: int = 0
    output_tokens: int = 0
    chunks: int = 0
    error: str | None = None
    stale: bool = False  # failed on a pooled connection before any response: safe to send again
    retried: bool = False
    abandoned: bool = False  # never sent, or cut off, because the server stopped serving

    @property
    def e2e(self) -> float:
        return self.end - self.start

    @property
    def tpot(self) -> float | None:
        if self.ttft is None or self.output_tokens < 2:
            return None
        return (self.e2e - self.ttft) / (self.output_tokens - 1)


def _handle_event(rec: RequestRecord, event: bytes, start: float, last: float) -> float:
    """Apply one SSE event to `rec`; returns the timestamp of the latest token."""
    data = event.strip()
    if not data.startswith(b"data:"):
        return last  # comments (": ping") and other fields
    data = data[5:].strip()
    if not data or data == b"[DONE]":
        return last
    msg = json.loads(data)
    usage = msg.get("usage")
    if usage:
        rec.prompt_tokens = usage.get("prompt_tokens") or rec.prompt_tokens
        rec.output_tokens = usage.get("completion_tokens") or rec.output_tokens
    choices = msg.get("choices")
    if choices:
        # a chunk with choices is one decoding step, even when its text is empty (special tokens)
        now = time.perf_counter()
        if rec.ttft is None:
            rec.ttft = now - start
        else:
            rec.itl.append(now - last)
        rec.chunks += 1
        return now
    return last


STALE = (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError)


async def send_one(session: aiohttp.ClientSession, url: str, payload: dict, timeout: float) -> RequestRecord:
    """One streamed request. A pooled keep-alive connection the server already closed (llama-server's HTTP
    library closes idle ones after 5 s) fails before the request reaches the engine: that request is
    sent again once on a new connection, timed from the new start, and counted in `retried`."""
    rec = await _send(session, url, payload, timeout)
    if rec.error and rec.stale:
        rec = await _send(session, url, payload, timeout)
        rec.retried = True
    return rec


async def _send(session: aiohttp.ClientSession, url: str, payload: dict, timeout: float) -> RequestRecord:
    start = time.perf_counter()
    rec = RequestRecord(ok=False, start=start, end=start)
    last = start
    responded = False
    try:
        async with session.post(url, json=payload, timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            responded = True
            if resp.status != 200:
                rec.error = f"HTTP {resp.status}: {(await resp.text())[:200]}"
                rec.end = time.perf_counter()
                return rec
            buf = b""
            # iter_any: whatever bytes arrived, parsed in one go. A line-by-line reader costs the client
            # about twice the wake-ups, and on a 2-core host the client's CPU is the server's CPU
            # (measured: ~5% lower throughput at concurrency 16 than vLLM's own benchmark client).
            async for raw in resp.content.iter_any():
                buf += raw
                while b"\n\n" in buf:
                    event, buf = buf.split(b"\n\n", 1)
                    last = _handle_event(rec, event, start, last)
            if buf.strip():
                last = _handle_event(rec, buf, start, last)
        rec.end = time.perf_counter()
        if rec.output_tokens == 0:
            rec.output_tokens = rec.chunks  # engines that send no usage block: one token per chunk
        rec.ok = rec.ttft is not None
        if not rec.ok:
            rec.error = "stream ended without any token"
    except (TimeoutError, aiohttp.ClientError, json.JSONDecodeError) as exc:
        rec.end = time.perf_counter()
        rec.error = f"{type(exc).__name__}: {exc}"[:300]
        rec.stale = isinstance(exc, STALE) and not responded
    return rec


@dataclass
class LevelResult:
    profile: str  # synchronous | concurrency | poisson
    level: float  # concurrency, or request rate for poisson
    requests: int
    completed: int
    failed: int
    duration_s: float
    req_s: float
    output_tok_s: float
    input_tok_s: float
    ttft_ms: dict
    tpot_ms: dict
    itl_ms: dict
    e2e_ms: dict
    errors: list[str]
    retried: int = 0  # requests sent again after a stale keep-alive connection (see send_one)
    abandoned: int = 0  # of `failed`: never sent or cut off because the server stopped serving
    first_error: str | None = None  # the error of the earliest failed request (abandoned ones last)

    def to_dict(self) -> dict:
        return asdict(self)


def aggregate(profile: str, level: float, records: list[RequestRecord]) -> LevelResult:
    ok = [r for r in records if r.ok]
    sent = [r for r in records if not r.abandoned]
    if sent:
        duration = max(r.end for r in sent) - min(r.start for r in sent)
    else:
        duration = 0.0
    failed = sorted((r for r in records if not r.ok), key=lambda r: (r.abandoned, r.start))
    out_tok = sum(r.output_tokens for r in ok)
    in_tok = sum(r.prompt_tokens for r in ok)
    return LevelResult(
        profile=profile,
        level=level,
        requests=len(records),
        completed=len(ok),
        failed=len(records) - len(ok),
        duration_s=duration,
        req_s=len(ok) / duration if duration > 0 else 0.0,
        output_tok_s=out_tok / duration if duration > 0 else 0.0,
        input_tok_s=in_tok / duration if duration > 0 else 0.0,
        ttft_ms=summarize([r.ttft for r in ok if r.ttft is not None], 1000),
        tpot_ms=summarize([r.tpot for r in ok if r.tpot is not None], 1000),
        itl_ms=summarize([x for r in ok for x in r.itl], 1000),
        retried=sum(r.retried for r in records),
        e2e_ms=summarize([r.e2e for r in ok], 1000),
        errors=sorted({r.error for r in records if r.error})[:5],
        abandoned=sum(r.abandoned for r in records),
        first_error=failed[0].error if failed else None,
    )


class LoadGenerator:
    """Drives one server. `extra` carries engine-specific request fields (vLLM: ignore_eos)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        output_tokens: int,
        timeout: float,
        extra: dict | None = None,
        keepalive: bool = True,
        stop: Callable[[], str | None] | None = None,
        check_every: float = 0.5,
    ) -> None:
        self.url = base_url.rstrip("/") + "/completions"
        self.model, self.output_tokens, self.timeout = model, output_tokens, timeout
        self.extra = extra or {}
        self.keepalive = keepalive  # False: a fresh connection per request (servers that drop pooled ones)
        # polled every `check_every` s while a level runs; a message means the server is gone
        self.stop, self.check_every = stop, check_every

    def payload(self, prompt: list[int] | str) -> dict:
        return {
            "model": self.model,
            "prompt": prompt,
            "max_tokens": self.output_tokens,
            "temperature": 0.0,
            "stream": True,
            "stream_options": {"include_usage": True},
            **self.extra,
        }

    async def _run(self, prompts: list, concurrency: int | None, rate: float | None, seed: int) -> list[RequestRecord]:
        conn = (
            aiohttp.TCPConnector(limit=concurrency or 0, keepalive_timeout=60)
            if self.keepalive
            else aiohttp.TCPConnector(limit=concurrency or 0, force_close=True)
        )
        async with aiohttp.ClientSession(connector=conn) as session:
            sem = asyncio.Semaphore(concurrency) if concurrency else None
            rng = random.Random(seed)
            stopped: list[str] = []
            tasks: list[asyncio.Task] = []

            def abandoned(start: float) -> RequestRecord:
                return RequestRecord(
                    ok=False,
                    start=start,
                    end=time.perf_counter(),
                    abandoned=True,
                    error=f"not completed: {stopped[0]}"[:300],
                )

            def check() -> None:
                why = self.stop() if self.stop and not stopped else None
                if why:
                    stopped.append(why)
                    me = asyncio.current_task()
                    for t in tasks:
                        if t is not me:  # a task cancelling itself would lose its own record
                            t.cancel()

            async def limited(p: list) -> RequestRecord:
                start = time.perf_counter()
                try:
                    if sem is None:
                        rec = await send_one(session, self.url, self.payload(p), self.timeout)
                    else:
                        async with sem:
                            if stopped:  # queued behind the semaphore when the server went away
                                return abandoned(start)
                            rec = await send_one(session, self.url, self.payload(p), self.timeout)
                except asyncio.CancelledError:  # cut off by check(): a record, not a lost task
                    if not stopped:
                        raise
                    return abandoned(start)
                if not rec.ok:  # a dead server refuses connections in microseconds: look at once
                    check()
                return rec

            async def watch() -> None:  # a hung engine fails no request: look every check_every s
                while not stopped:
                    await asyncio.sleep(self.check_every)
                    check()

            watcher = asyncio.create_task(watch()) if self.stop else None
            skipped = []
            try:
                for p in prompts:
                    if stopped:
                        skipped.append(abandoned(time.perf_counter()))
                        continue
                    tasks.append(asyncio.create_task(limited(p)))
                    if rate:
                        await asyncio.sleep(rng.expovariate(rate))
                # a task cancelled by check() before it ever ran never reaches its own except: its
                # CancelledError comes back here as a result and is recorded as abandoned
                done = await asyncio.gather(*tasks, return_exceptions=True)
                out = []
                for r in done:
                    if isinstance(r, asyncio.CancelledError) and stopped:
                        out.append(abandoned(time.perf_counter()))
                    elif isinstance(r, BaseException):
                        raise r
                    else:
                        out.append(r)
                return [*out, *skipped]
            finally:
                if watcher:
                    watcher.cancel()

    def synchronous(self, prompts: list) -> LevelResult:
        return aggregate("synchronous", 1, asyncio.run(self._run(prompts, 1, None, 0)))

    def concurrency(self, prompts: list, level: int) -> LevelResult:
        return aggregate("concurrency", level, asyncio.run(self._run(prompts, level, None, 0)))

    def poisson(self, prompts: list, rate: float, seed: int) -> LevelResult:
        return aggregate("poisson", rate, asyncio.run(self._run(prompts, None, rate, seed)))

    def warmup(self, prompts: list) -> None:
        asyncio.run(self._run(prompts, len(prompts) or 1, None, 0))

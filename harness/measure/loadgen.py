"""The project's async load generator: streaming /v1/completions (and /v1/chat/completions) under
synchronous, fixed-concurrency, Poisson- and constant-arrival profiles; one RequestRecord per request
(harness/measure/request.py: TTFT, ITL, TPOT and end-to-end latency are defined there), and a level's
figures from them (harness/measure/level.py, which makes the stored harness/result.Level).

A `stop` callback (the server's health check) is polled while a level runs: once it answers, requests
in flight are cut off and the rest are never sent (counted as `abandoned`), so a dead server fails fast
instead of receiving the whole remaining load.

The event loop is uvloop's where it is installed (vLLM's environment has it), as GuideLLM's workers do:
against a null server on a 2-core AMD EPYC it took 7-25 % off the client's CPU per request (aiohttp alone
costs ~250 us there); asyncio's own loop otherwise. Poisson arrivals are scheduled on absolute times (first
send + the running sum of the drawn gaps, as vLLM's get_request does) and timed by a thread (`_paced`),
so a late wake-up delays one request instead of every later one; each record keeps its scheduled time and
the level reports how late requests started (`schedule_lag_ms`).
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import aiohttp

from harness.measure.itl_budget import ItlBudget
from harness.measure.level import aggregate
from harness.measure.request import RequestRecord
from harness.measure.workloads import Conversation, Request
from harness.result import Level
from harness.spec.loadtest import SLO

T = TypeVar("T")


def _value_at(data: bytes, key: bytes) -> int:
    """Where the value of `key` (quoted) starts in one JSON object's bytes; -1 without the key. A quoted key
    cannot occur inside a JSON string (a quote there is escaped, so the byte before its closing quote is a
    backslash), so a byte search finds keys only."""
    i = data.find(key)
    if i < 0:
        return -1
    j, n = i + len(key), len(data)
    while j < n and data[j] in b" \t\r\n:":
        j += 1
    return j


def _step(rec: RequestRecord, start: float, last: float) -> float:
    # a chunk with choices is one decoding step, even when its text is empty (special tokens)
    now = time.perf_counter()
    if rec.ttft is None:
        rec.ttft = now - start
    else:
        rec.itl.append(now - last)
    rec.chunks += 1
    return now


def _handle_event(rec: RequestRecord, event: bytes, start: float, last: float) -> float:
    """Apply one SSE event to `rec`; returns the timestamp of the latest token.

    A token chunk is read without a JSON parse: its "choices" is a non-empty list and its "usage" absent or
    null (vLLM writes `"usage": null` in every chunk). Any other event -- the usage block, an error, a chat
    chunk naming the role (no token), a shape this does not expect -- is parsed in full. (json.loads of every
    chunk was about a quarter of the client's CPU per request against a null server, bench/loadgen_overhead.py.)"""
    data = event.strip()
    if not data.startswith(b"data:"):
        return last  # comments (": ping") and other fields
    data = data[5:].strip()
    if not data or data == b"[DONE]":
        return last
    c, u = _value_at(data, b'"choices"'), _value_at(data, b'"usage"')
    role = data.find(b'"role"') >= 0
    if data[:1] == b"{" and c >= 0 and data[c : c + 1] == b"[" and (u < 0 or data[u : u + 1] == b"n") and not role:
        k = c + 1
        while data[k : k + 1] in (b" ", b"\t", b"\r", b"\n"):
            k += 1
        return _step(rec, start, last) if data[k : k + 1] != b"]" else last
    msg = json.loads(data)
    usage = msg.get("usage")
    if usage:
        rec.prompt_tokens = usage.get("prompt_tokens") or rec.prompt_tokens
        rec.output_tokens = usage.get("completion_tokens") or rec.output_tokens
        rec.cached_tokens = (usage.get("prompt_tokens_details") or {}).get("cached_tokens", rec.cached_tokens)
    choices = msg.get("choices")
    if choices and not _role_only(choices[0]):
        return _step(rec, start, last)
    return last


def _role_only(choice: dict) -> bool:
    # a chat stream opens with {"delta": {"role": "assistant", "content": ""}} (vLLM) or content null
    # (llama-server) before any token: as vLLM's benchmark does, TTFT is the first chunk with content
    delta = choice.get("delta")
    return isinstance(delta, dict) and "role" in delta and not delta.get("content")


STALE = (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError)


def run_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion on a fresh event loop: uvloop's when installed, else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


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
                if b"\n\n" in buf:
                    *events, buf = buf.split(b"\n\n")
                    for event in events:
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


async def _paced(
    prompts: list, gaps: list[float], launch: Callable[[list, float], None], halt: threading.Event
) -> None:
    """Hand each prompt to `launch` on the event loop at its absolute send time (first call + the running sum
    of `gaps`), timed by a thread. The loop's own timers wake in whole milliseconds (asyncio rounds epoll's
    timeout up to 1 ms; libuv counts in ms), which alone puts the p99 of the send error near 1 ms; a
    thread's timed wait wakes within tens of microseconds, and the loop starts the request on its next
    turn. While the thread runs, the GIL switch interval is 0.2 ms (not 5), so a busy loop hands the thread
    the GIL within that. Returns once every prompt was handed over or `halt` was set."""
    loop = asyncio.get_running_loop()

    def pace() -> None:
        due = time.perf_counter()
        for p, gap in zip(prompts, gaps, strict=True):
            due += gap
            wait = due - time.perf_counter()
            if (wait > 0 and halt.wait(wait)) or halt.is_set():
                return
            loop.call_soon_threadsafe(launch, p, due)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(min(interval, 0.0002))
    try:
        # to_thread's result reaches the loop after the thread's last call_soon_threadsafe: every hand-over
        # has run when this returns
        await asyncio.to_thread(pace)
    finally:
        halt.set()
        sys.setswitchinterval(interval)


class LoadGenerator:
    """Drives one server. `extra` carries engine-specific request fields (vLLM: ignore_eos). A prompt is token
    ids or text for /v1/completions, or a harness/measure/workloads `Request` (its own output length, or chat
    messages for /v1/chat/completions) or `Conversation` (its turns in order; it counts as one request towards
    concurrency and arrival rates, and gives one record per turn)."""

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
        self.chat_url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.output_tokens, self.timeout = model, output_tokens, timeout
        self.extra = extra or {}
        self.keepalive = keepalive  # False: a fresh connection per request (servers that drop pooled ones)
        # polled every `check_every` s while a level runs; a message means the server is gone
        self.stop, self.check_every = stop, check_every

    def payload(self, prompt: Any) -> dict:
        if isinstance(prompt, Request):
            body = {"messages": prompt.messages} if prompt.chat else {"prompt": prompt.prompt}
            max_tokens = prompt.max_tokens or self.output_tokens
        else:
            body, max_tokens = {"prompt": prompt}, self.output_tokens
        return {
            "model": self.model,
            **body,
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "stream": True,
            "stream_options": {"include_usage": True},
            **self.extra,
        }

    async def _one(self, session: aiohttp.ClientSession, prompt: Any) -> list[RequestRecord]:
        """The records of one item: a request, or every turn of a conversation up to its first failure."""
        out: list[RequestRecord] = []
        for req in prompt.turns if isinstance(prompt, Conversation) else [prompt]:
            chat = isinstance(req, Request) and req.chat
            rec = await send_one(session, self.chat_url if chat else self.url, self.payload(req), self.timeout)
            rec.turn = req.turn if isinstance(req, Request) else 0
            out.append(rec)
            if not rec.ok:
                break
        return out

    async def _run(
        self, prompts: list, concurrency: int | None, rate: float | None, seed: int, constant: bool = False
    ) -> list[RequestRecord]:
        conn = (
            aiohttp.TCPConnector(limit=concurrency or 0, keepalive_timeout=60)
            if self.keepalive
            else aiohttp.TCPConnector(limit=concurrency or 0, force_close=True)
        )
        async with aiohttp.ClientSession(connector=conn) as session:
            sem = asyncio.Semaphore(concurrency) if concurrency else None
            rng = random.Random(seed)
            budget = ItlBudget(seed=seed)  # bounds the gaps the run keeps (harness/measure/itl_budget.py)
            stopped: list[str] = []
            tasks: list[asyncio.Task] = []
            halt = threading.Event()  # tells the pacer thread to stop sending

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
                    halt.set()
                    me = asyncio.current_task()
                    for t in tasks:
                        if t is not me:  # a task cancelling itself would lose its own record
                            t.cancel()

            async def limited(p: Any, due: float | None) -> list[RequestRecord]:
                start = time.perf_counter()
                try:
                    if sem is None:
                        recs = await self._one(session, p)
                    else:
                        async with sem:
                            if stopped:  # queued behind the semaphore when the server went away
                                return [abandoned(start)]
                            recs = await self._one(session, p)
                except asyncio.CancelledError:  # cut off by check(): a record, not a lost task
                    if not stopped:
                        raise
                    return [abandoned(start)]
                recs[0].scheduled = due
                for r in recs:
                    budget.settle(r)
                if not recs[-1].ok:  # a dead server refuses connections in microseconds: look at once
                    check()
                return recs

            async def watch() -> None:  # a hung engine fails no request: look every check_every s
                while not stopped:
                    await asyncio.sleep(self.check_every)
                    check()

            watcher = asyncio.create_task(watch()) if self.stop else None
            skipped: list[RequestRecord] = []

            def launch(p: Any, due: float | None) -> None:
                if stopped:
                    skipped.append(abandoned(time.perf_counter()))
                else:
                    tasks.append(asyncio.create_task(limited(p, due)))

            try:
                if rate:
                    # poisson: absolute send times, drawn up front (the first request at once, as before);
                    # constant (a sweep's rate levels, GuideLLM's AsyncConstantStrategy): every gap 1 / rate
                    gaps = [0.0] + [1.0 / rate if constant else rng.expovariate(rate) for _ in prompts[1:]]
                    await _paced(prompts, gaps, launch, halt)
                    skipped += [abandoned(time.perf_counter()) for _ in range(len(prompts) - len(tasks) - len(skipped))]
                else:
                    for p in prompts:
                        launch(p, None)
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
                        out += r
                return [*out, *skipped]
            finally:
                if watcher:
                    watcher.cancel()

    def records(self, profile: str, prompts: list, level: float, seed: int = 0) -> list[RequestRecord]:
        """One run of a level: synchronous (level 1), concurrency `level`, or poisson or constant arrivals at
        `level` req/s."""
        if profile == "synchronous":
            return run_loop(self._run(prompts, 1, None, 0))
        if profile == "concurrency":
            return run_loop(self._run(prompts, int(level), None, 0))
        if profile == "poisson":
            return run_loop(self._run(prompts, None, level, seed))
        if profile == "constant":
            return run_loop(self._run(prompts, None, level, seed, constant=True))
        raise ValueError(f"unknown load profile {profile!r}")

    def synchronous(self, prompts: list, slo: SLO | None = None) -> Level:
        return aggregate("synchronous", 1, self.records("synchronous", prompts, 1), slo)

    def concurrency(self, prompts: list, level: int, slo: SLO | None = None) -> Level:
        return aggregate("concurrency", level, self.records("concurrency", prompts, level), slo)

    def poisson(self, prompts: list, rate: float, seed: int, slo: SLO | None = None) -> Level:
        return aggregate("poisson", rate, self.records("poisson", prompts, rate, seed), slo)

    def warmup(self, prompts: list) -> None:
        run_loop(self._run(prompts, len(prompts) or 1, None, 0))

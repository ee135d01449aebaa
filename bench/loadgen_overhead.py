"""Benchmark: the load generator's own ceiling -- the highest request rate it sustains on one core.

Starts a null OpenAI-compatible streaming server in its own process (raw asyncio: every completion request
is answered at once with `--output` token events, a usage event and [DONE]; it notes when each request
arrived), pins itself to one core and the server to another, and runs dqbench's LoadGenerator (poisson
arrivals, the matrix profile `kind: poisson`) at rising rates for `--seconds` each. A rate is *sustained*
when every request completed and the p99 of |actual send - scheduled send| is under 1 ms, actual send
being when the request's clock starts (RequestRecord.start: every latency is measured from it).

Next to it, at each rate (the two alternating which goes first, so that both meet the same host),
`vllm bench serve` (vllm.benchmarks.serve, imported once in a child pinned to the same core) against the
same server. vLLM keeps no send times, so both are also judged from the server's side: the p99 of
|arrival_i - scheduled_i - their median difference|, arrivals matched to the schedule in order.
vLLM runs at a constant rate (`--burstiness inf`): its Poisson schedule cannot be recovered from outside,
and constant arrivals are the easier schedule to keep, so the comparison does not favour dqbench.

    ./dq python bench/loadgen_overhead.py [--rates 500 1000 2000 4000] [--seconds 2] [--output 16] [--no-vllm]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp

from harness.measure.loadgen import LoadGenerator
from harness.measure.request import RequestRecord
from harness.measure.stats import percentile

LIMIT_MS = 1.0  # the scheduling error a sustained rate keeps its p99 under
DEFAULT_RATES = [250, 500, 1000, 1500, 2000, 3000, 4000, 6000, 8000]


# ---------------------------------------------------------------- the null server (its own process)
def _sse_body(tokens: int) -> bytes:
    chunk = {"id": "null", "object": "text_completion", "choices": [{"index": 0, "text": " t", "finish_reason": None}]}
    events = [f"data: {json.dumps(chunk)}\n\n"] * tokens
    usage = {"prompt_tokens": 4, "completion_tokens": tokens, "total_tokens": 4 + tokens}
    events.append(f"data: {json.dumps({'id': 'null', 'choices': [], 'usage': usage})}\n\n")
    events.append("data: [DONE]\n\n")
    return "".join(events).encode()


def _response(body: bytes, ctype: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s" % (ctype, len(body), body)


def serve(port: int, tokens: int) -> None:
    """Answer every POST /v1/completions at once; GET /arrivals returns (and forgets) the arrival times and
    how many connections were opened since."""
    try:
        import uvloop  # the server must not be what limits the rate; it is not what is measured

        uvloop.install()
    except ImportError:
        pass
    completion = _response(_sse_body(tokens), b"text/event-stream")
    models = _response(b'{"object":"list","data":[{"id":"null","object":"model"}]}', b"application/json")
    arrivals: list[float] = []
    opened = [0]

    class Null(asyncio.Protocol):
        def connection_made(self, transport) -> None:
            self.t, self.buf = transport, b""
            opened[0] += 1

        def data_received(self, data: bytes) -> None:
            now = time.perf_counter()  # CLOCK_MONOTONIC: the same clock as the client's perf_counter
            self.buf += data
            while True:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = self.buf[:end].lower()
                k = head.find(b"content-length:")
                n = int(head[k + 15 : head.find(b"\r\n", k) if head.find(b"\r\n", k) > 0 else None]) if k >= 0 else 0
                if len(self.buf) < end + 4 + n:
                    return
                self.buf = self.buf[end + 4 + n :]
                path = head.split(b" ", 2)[1]
                if path.startswith(b"/v1/completions"):
                    arrivals.append(now)
                    self.t.write(completion)
                elif path.startswith(b"/arrivals"):
                    doc = {"arrivals": arrivals, "connections": opened[0] - 1}  # less this request's own
                    self.t.write(_response(json.dumps(doc).encode(), b"application/json"))
                    arrivals.clear()
                    opened[0] = 0
                else:
                    self.t.write(models)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        srv = await loop.create_server(Null, "127.0.0.1", port, backlog=4096)
        async with srv:
            await srv.serve_forever()

    asyncio.run(main())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def arrivals(port: int) -> tuple[list[float], int]:
    """The server's arrival times since the last call, sorted, and the connections opened meanwhile."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/arrivals", timeout=30) as r:
        doc = json.loads(r.read())
    return sorted(doc["arrivals"]), doc["connections"]


def server_error_ms(got: list[float], scheduled: list[float]) -> tuple[float | None, float | None]:
    """p50 and p99 in ms of |arrival - scheduled send - their median difference|, the i-th arrival matched
    to the i-th send: the median takes out what every request pays alike (transport, the first connect)."""
    if len(got) != len(scheduled) or not got:
        return None, None
    diff = [a - s for a, s in zip(got, scheduled, strict=True)]
    mid = percentile(diff, 50) or 0.0
    err = [abs(d - mid) * 1000 for d in diff]
    return percentile(err, 50), percentile(err, 99)


# ---------------------------------------------------------------- vLLM's client (its own process)
VLLM_DRIVER = r"""
import contextlib, io, json, os, sys, tempfile, urllib.request
from pathlib import Path
os.sched_setaffinity(0, {int(sys.argv[1])})
from vllm.benchmarks.serve import add_cli_args, main
from vllm.utils.argparse_utils import FlexibleArgumentParser
port, tokenizer, output, seconds = sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
out = sys.stdout  # vLLM logs to stdout too: answers are the lines marked @@
out.write("@@ready\n"); out.flush()
for line in sys.stdin:
    rate = float(line)
    n = max(200, int(rate * seconds))
    with tempfile.TemporaryDirectory() as d:
        p = FlexibleArgumentParser(); add_cli_args(p)
        args = p.parse_args([
            "--backend", "openai", "--base-url", f"http://127.0.0.1:{port}", "--endpoint", "/v1/completions",
            "--model", "null", "--tokenizer", tokenizer, "--dataset-name", "random", "--random-input-len", "8",
            "--random-output-len", output, "--num-prompts", str(n), "--request-rate", str(rate),
            "--burstiness", "inf", "--ignore-eos", "--num-warmups", "0", "--seed", "0", "--disable-tqdm",
            "--ready-check-timeout-sec", "0", "--save-result", "--result-dir", d, "--result-filename", "r.json",
        ])
        urllib.request.urlopen(f"http://127.0.0.1:{port}/arrivals").read()  # forget earlier arrivals
        with contextlib.redirect_stdout(io.StringIO()):
            main(args)
        r = json.loads((Path(d) / "r.json").read_text())
    doc = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/arrivals").read())
    row = {"rate": rate, "n": n, "completed": r["completed"], "req_s": r["request_throughput"],
           "arrivals": sorted(doc["arrivals"]), "connections": doc["connections"]}
    out.write("@@" + json.dumps(row) + "\n"); out.flush()
"""


class VllmClient:
    """`vllm bench serve` in a child pinned to `core`, imported once, asked one rate at a time."""

    def __init__(self, python: str, core: int, port: int, tokenizer: str, output: int, seconds: float) -> None:
        self.log = tempfile.NamedTemporaryFile("w+", prefix="dqbench-vllm-bench-", suffix=".log", delete=False)
        args = [str(core), str(port), tokenizer, str(output), str(seconds)]
        self.proc = subprocess.Popen(
            [python, "-c", VLLM_DRIVER, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            start_new_session=True,
        )
        self.ready = self._answer() == "ready"

    def _answer(self) -> str | None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("@@"):
                return line[2:].strip()
        self.log.seek(0)
        print(
            f"vllm bench serve stopped (exit {self.proc.wait()}); its log {self.log.name}:\n{self.log.read()[-2500:]}"
        )
        return None

    def run(self, rate: float) -> dict | None:
        if not self.ready or self.proc.poll() is not None:
            return None
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{rate}\n")
        self.proc.stdin.flush()
        got = self._answer()
        return json.loads(got) if got else None

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            self.proc.wait(timeout=30)
        os.unlink(self.log.name)


# ---------------------------------------------------------------- dqbench's client (this process)
def run_ours(port: int, output: int, rate: float, seconds: float) -> dict:
    n = max(200, int(rate * seconds))
    gen = LoadGenerator(f"http://127.0.0.1:{port}/v1", "null", output, timeout=30)
    arrivals(port)  # forget earlier arrivals
    cpu = time.process_time()
    recs: list[RequestRecord] = gen.records("poisson", [[1, 2, 3, 4]] * n, rate, seed=0)
    cpu = time.process_time() - cpu
    ok = [r for r in recs if r.ok]
    lag = [abs(r.start - r.scheduled) * 1000 for r in recs if r.scheduled is not None]
    sched = sorted(r.scheduled for r in recs if r.scheduled is not None)
    starts = sorted(r.start for r in recs)
    got, connections = arrivals(port)
    return {
        "rate": rate,
        "n": n,
        "completed": len(ok),
        "p50_ms": percentile(lag, 50),
        "p99_ms": percentile(lag, 99),
        "max_ms": max(lag) if lag else None,
        "send_rate": (n - 1) / (starts[-1] - starts[0]) if n > 1 and starts[-1] > starts[0] else None,
        **dict(zip(("server_p50_ms", "server_p99_ms"), server_error_ms(got, sched), strict=True)),
        "connections": connections,
        "cpu_us": cpu / n * 1e6,  # the client's CPU per request, its pacer thread included
    }


def sustained(row: dict, key: str) -> bool:
    return row["completed"] == row["n"] and row.get(key) is not None and row[key] < LIMIT_MS


def top(rows: list[dict], key: str) -> str:
    """The highest rate of `rows` sustained by `key`'s figure, in words."""
    best = max((r["rate"] for r in rows if sustained(r, key)), default=None)
    return "none of the rates tried" if best is None else f"{best:g} req/s"


def saturated(row: dict) -> bool:
    """Far past the ceiling: requests lost, or the median request sent 10 ms late (the backlog grows)."""
    return row["completed"] < row["n"] or (row["p50_ms"] or 0) > 10


from harness.hw.probe import host_line  # noqa: E402 -- one host naming for every bench


def sweep(a: argparse.Namespace, port: int) -> tuple[list[dict], list[dict]]:
    """Both clients at each rate, alternating which goes first so that both meet the same host; stops two
    rates past dqbench's saturation."""
    vllm = None
    if a.vllm:
        from harness.settings import load_settings

        st = load_settings()
        tokenizer = str(st.models_dir / "smollm2-135m-instruct")
        vllm = VllmClient(str(st.python), a.client_core, port, tokenizer, a.output, a.seconds)
    ours: list[dict] = []
    theirs: list[dict] = []
    misses = 0
    try:
        for i, rate in enumerate(a.rates):
            for who in ("ours", "vllm") if i % 2 == 0 else ("vllm", "ours"):
                if who == "ours":
                    ours.append(run_ours(port, a.output, rate, a.seconds))
                elif vllm is not None and (v := vllm.run(rate)) is not None:
                    sched = [k / v["rate"] for k in range(len(v["arrivals"]))]
                    v["server_p50_ms"], v["server_p99_ms"] = server_error_ms(v["arrivals"], sched)
                    theirs.append(v)
            misses = misses + 1 if saturated(ours[-1]) else 0
            if misses == 2:  # two rates in a row far past the ceiling: higher ones only take longer
                break
    finally:
        if vllm is not None:
            vllm.close()
    return ours, theirs


def report(a: argparse.Namespace, ours: list[dict], theirs: list[dict]) -> None:
    print("dqbench LoadGenerator, poisson arrivals")
    head = ("rate", "sent/s", "done", "p50 err ms", "p99 err ms", "max err ms", "server p50", "server p99")
    widths = (7, 8, 11, 11, 11, 11, 11, 11, 6, 11)
    print(" ".join(f"{h:>{w}}" for h, w in zip((*head, "conns", "CPU us/req"), widths)))
    for r in ours:
        print(
            f"{r['rate']:>7g} {r['send_rate'] or 0:>8.0f} {r['completed']:>5}/{r['n']:<5} {r['p50_ms']:>11.3f} "
            f"{r['p99_ms']:>11.3f} {r['max_ms']:>11.3f} {_f(r['server_p50_ms']):>11} {_f(r['server_p99_ms']):>11} "
            f"{r['connections']:>6} {r['cpu_us']:>11.0f}"
        )
    if a.vllm:
        print("\nvllm bench serve (vllm.benchmarks.serve), constant rate (--burstiness inf)")
        print(f"{'rate':>7} {'req/s':>8} {'done':>11} {'server p50':>11} {'server p99':>11} {'conns':>6}")
        for v in theirs:
            print(
                f"{v['rate']:>7g} {v['req_s']:>8.0f} {v['completed']:>5}/{v['n']:<5} "
                f"{_f(v['server_p50_ms']):>11} {_f(v['server_p99_ms']):>11} {v['connections']:>6}"
            )

    def vs(key: str) -> str:
        return f", vllm bench serve {top(theirs, key)}" if a.vllm else ""

    print(
        f"\nhighest rate sustained on one core (all requests done, p99 scheduling error < {LIMIT_MS:g} ms; "
        f"goal >= 2000 req/s):\n  client-side send times: dqbench {top(ours, 'p99_ms')}\n"
        f"  the server's arrivals: dqbench {top(ours, 'server_p99_ms')}{vs('server_p99_ms')}\n"
        f"keeping pace, tail aside (server-side p50 < {LIMIT_MS:g} ms, all done): dqbench "
        f"{top(ours, 'server_p50_ms')}{vs('server_p50_ms')}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", type=float, nargs="+", default=DEFAULT_RATES)
    ap.add_argument("--seconds", type=float, default=2.0, help="arrivals per rate (at least 200 requests)")
    ap.add_argument("--output", type=int, default=16, help="token events per response")
    ap.add_argument("--vllm", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--client-core", type=int, default=0, help="the one core both clients run on")
    ap.add_argument("--server-core", type=int, default=1, help="the null server's core")
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # internal: run the null server on this port
    a = ap.parse_args()
    if a.serve:
        os.sched_setaffinity(0, {a.server_core})  # a core of its own (it inherits the client's pinning)
        serve(a.serve, a.output)
        return
    os.sched_setaffinity(0, {a.client_core})
    port = free_port()
    me = [sys.executable, __file__, "--serve", str(port), "--output", str(a.output)]
    me += ["--server-core", str(a.server_core)]
    root = str(Path(__file__).resolve().parent.parent)
    server = subprocess.Popen(me, start_new_session=True, env={**os.environ, "PYTHONPATH": root})
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                arrivals(port)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the null server did not start") from None
                time.sleep(0.1)
        print(host_line())
        loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio's own"  # harness/measure/loadgen.run_loop
        print(
            f"Python {platform.python_version()}, aiohttp {aiohttp.__version__}, event loop {loop}; client on core "
            f"{a.client_core}, null server on core {a.server_core}; {a.output} token events per response; >= "
            f"{a.seconds:g} s of arrivals per rate\n",
            flush=True,
        )
        report(a, *sweep(a, port))
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=10)


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


if __name__ == "__main__":
    main()

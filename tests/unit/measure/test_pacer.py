"""Poisson sends: absolute times kept by a pacer thread, every prompt handed over once and in order, and a
halt (the server is gone) stops the sending with the rest recorded as abandoned."""

import asyncio
import socket
import sys
import threading
import time

import pytest

from harness.measure.loadgen import LoadGenerator, _paced


def test_every_prompt_is_handed_over_in_order_at_its_time():
    got: list[tuple[int, float, float]] = []

    def launch(p, due):
        got.append((p, due, time.perf_counter()))

    async def main():
        await _paced(list(range(20)), [0.0] + [0.005] * 19, launch, threading.Event())

    before = sys.getswitchinterval()
    asyncio.run(main())
    assert [p for p, _, _ in got] == list(range(20))
    dues = [d for _, d, _ in got]
    assert all(b - a == pytest.approx(0.005, abs=1e-9) for a, b in zip(dues, dues[1:]))
    assert all(t >= d for _, d, t in got)  # never early
    assert sys.getswitchinterval() == before  # restored


def test_a_halt_stops_sending():
    got: list[int] = []
    halt = threading.Event()

    def launch(p, due):
        got.append(p)
        if p == 2:
            halt.set()

    asyncio.run(_paced(list(range(10)), [0.0] + [0.01] * 9, launch, halt))
    assert got == [0, 1, 2]


def test_a_dead_server_stops_a_poisson_level_and_the_rest_is_abandoned():
    with socket.socket() as s:  # a port nothing listens on: every request is refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gen = LoadGenerator(f"http://127.0.0.1:{port}/v1", "m", 4, timeout=5, stop=lambda: "server gone")
    recs = gen.records("poisson", [[1]] * 20, 50.0, seed=0)
    assert len(recs) == 20
    assert sum(r.abandoned for r in recs) >= 15 and all(not r.ok for r in recs)
    assert all(r.error == "not completed: server gone" for r in recs if r.abandoned)

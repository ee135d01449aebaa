"""harness/serve/prestart.py: a server started ahead is handed to the start that asks for exactly it, once,
and one never asked for is stopped; whether a second server fits beside the running one."""

import threading
from types import SimpleNamespace

import pytest

from harness.serve import prestart
from harness.serve.base import EngineServer


class Handle:
    def __init__(self, startup_s=3.0):
        self.startup_s, self.ahead_s, self.stopped, self.up = startup_s, 0.0, 0, True

    def alive(self):
        return self.up

    def stop(self, grace=15.0):
        self.stopped += 1


class Engine(EngineServer):
    engine = "fake"

    def __init__(self, fail=False, gate=None):
        super().__init__(SimpleNamespace(), "/py", "cpu")
        self.fail, self.gate, self.started = fail, gate, []

    def command(self, artefact, port, served_name, trust_remote_code):
        return ["serve", artefact.model, "--port", str(port), "--name", served_name]

    def inspect(self, handle, artefact):
        return {}

    def scoring(self, handle, artefact):
        raise NotImplementedError

    def start_now(self, artefact, served_name, log_path, trust_remote_code=False):
        if self.gate is not None:
            self.gate.wait(5)
        if self.fail:
            raise RuntimeError("engine died during start-up")
        h = Handle()
        self.started.append(h)
        return h


ART = SimpleNamespace(model="/m")


@pytest.fixture(autouse=True)
def empty_pool():
    prestart.discard()
    yield
    prestart.discard()


def test_the_start_that_asks_for_the_same_server_takes_it_once(tmp_path):
    eng = Engine()
    prestart.start_ahead(eng, ART, "dq-c1", tmp_path / "server.log", False, "c1")
    h = eng.start(ART, "dq-c1", tmp_path / "server.log")
    assert h is eng.started[0] and len(eng.started) == 1 and h.ahead_s >= 0
    again = eng.start(ART, "dq-c1", tmp_path / "server.log")  # taken already: a new one starts
    assert again is not h and len(eng.started) == 2


def test_a_start_under_way_is_waited_for_and_another_servers_is_not_taken(tmp_path):
    gate = threading.Event()
    eng = Engine(gate=gate)
    prestart.start_ahead(eng, ART, "dq-c1", tmp_path / "server.log", False, "c1")
    assert prestart.take(eng, ART, "dq-c2", False) is None  # another cell's name: not this server
    threading.Timer(0.2, gate.set).start()
    assert prestart.take(eng, ART, "dq-c1", False) is eng.started[0]


def test_a_failed_start_ahead_is_not_taken(tmp_path):
    eng = Engine(fail=True)
    prestart.start_ahead(eng, ART, "dq-c1", tmp_path / "server.log", False, "c1")
    assert prestart.take(eng, ART, "dq-c1", False) is None


def test_a_server_never_asked_for_is_stopped(tmp_path):
    eng = Engine()
    prestart.start_ahead(eng, ART, "dq-c1", tmp_path / "server.log", False, "c1")
    prestart.start_ahead(eng, ART, "dq-c2", tmp_path / "server2.log", False, "c2")
    prestart.discard("c1")
    assert prestart.take(eng, ART, "dq-c1", False) is None
    assert sum(h.stopped for h in eng.started) == 1
    assert prestart.take(eng, ART, "dq-c2", False) is not None


def test_room_for_a_second_server(monkeypatch):
    cell = SimpleNamespace(device="cpu", estimate=SimpleNamespace(total_gib=2.0))
    monkeypatch.setattr(prestart, "_available_gib", lambda: 10.0)
    assert prestart.room_for(cell, SimpleNamespace()) is None
    monkeypatch.setattr(prestart, "_available_gib", lambda: 2.5)
    assert "needs about 2.0 GiB and 2.5 GiB are free" in prestart.room_for(cell, SimpleNamespace())
    assert "no memory estimate" in prestart.room_for(SimpleNamespace(device="cpu", estimate=None), None)
    gpu = SimpleNamespace(device="cuda", estimate=None)
    monkeypatch.setattr(prestart, "_gpu_free_total_gib", lambda: (70.0, 80.0))
    assert "needs about 72.0 GiB" in prestart.room_for(gpu, SimpleNamespace(gpu_memory_utilization=0.9))
    assert prestart.room_for(gpu, SimpleNamespace(gpu_memory_utilization=0.3)) is None
    monkeypatch.setattr(prestart, "_gpu_free_total_gib", lambda: (None, None))
    assert "unknown" in prestart.room_for(gpu, SimpleNamespace(gpu_memory_utilization=0.3))

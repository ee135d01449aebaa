"""A draft's acceptance per load level (harness/measure/acceptance.py): counters read around a level from a
real HTTP /metrics page, and measure() hands every level to its probes."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from harness.measure.acceptance import AcceptanceProbe, level_speculative, read_counters
from harness.result import Level
from harness.serve.speculative import SpecCounters


class Metrics(BaseHTTPRequestHandler):
    page = ""

    def do_GET(self):  # the http.server API names it
        body = type(self).page.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def metrics_server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Metrics)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()


def page(drafts, drafted, accepted):
    return (
        f"llamacpp:spec_decode_num_drafts_total {drafts}\n"
        f"llamacpp:spec_decode_num_draft_tokens_total {drafted}\n"
        f"llamacpp:spec_decode_num_accepted_tokens_total {accepted}\n"
    )


def test_a_levels_acceptance_is_between_its_two_readings(metrics_server):
    url = f"http://127.0.0.1:{metrics_server.server_port}/metrics"
    Metrics.page = page(5, 20, 8)  # the warm-up's drafts
    probe = AcceptanceProbe(url)
    probe.begin()
    Metrics.page = page(15, 60, 38)
    lv = Level(profile="synchronous", level=1, requests=2, completed=2, failed=0)
    got = probe.end(lv)["speculative"]
    assert (got.drafts, got.draft_tokens, got.accepted_tokens) == (10, 40, 30)
    assert got.acceptance_rate == pytest.approx(0.75) and got.mean_accepted_len == pytest.approx(4.0)


def test_no_counters_no_figure(metrics_server):
    url = f"http://127.0.0.1:{metrics_server.server_port}/metrics"
    Metrics.page = "llamacpp:prompt_tokens_total 3\n"
    assert read_counters(url) is None
    probe = AcceptanceProbe(url)
    probe.begin()
    assert probe.end(Level(profile="synchronous", level=1, requests=1, completed=1, failed=0)) == {}
    assert read_counters("http://127.0.0.1:1/metrics") is None  # nothing listening


def test_a_level_without_drafts_has_no_rates():
    got = level_speculative(SpecCounters(0, 0, 0))
    assert got.acceptance_rate is None and got.mean_accepted_len is None


def test_measure_hands_every_level_to_its_probes(monkeypatch):
    from harness.measure import run as run_mod
    from harness.spec.loadtest import LoadSpec

    class Gen:
        def __init__(self, *a, **k):
            pass

        def warmup(self, prompts):
            pass

        def records(self, profile, batch, level, seed):
            return []

    seen = []

    class Probe:
        def begin(self):
            seen.append("begin")

        def end(self, level):
            seen.append(("end", level.profile, level.level))
            return {"speculative": level_speculative(SpecCounters(2, 8, 4))}

    monkeypatch.setattr(run_mod, "LoadGenerator", Gen)
    monkeypatch.setattr(run_mod, "build_requests", lambda load, tok, n: [["p"]] * n)
    load = LoadSpec(
        warmup_requests=0,
        profiles=[{"kind": "synchronous", "requests": 1}, {"kind": "concurrency", "levels": [2, 4], "requests": 2}],
    )
    perf = run_mod.measure("http://x/v1", "m", load, "tok", probes=[Probe()])
    assert seen == [
        "begin",
        ("end", "synchronous", 1),
        "begin",
        ("end", "concurrency", 2),
        "begin",
        ("end", "concurrency", 4),
    ]
    assert all(lv.speculative.mean_accepted_len == 3.0 for lv in perf.levels)  # 1 + 4 accepted / 2 drafts

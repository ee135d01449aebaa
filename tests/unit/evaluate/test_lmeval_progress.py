"""The lm-eval progress hook of harness/evaluate/lmeval_worker.py, on a fake LM and a fake evaluator module:
requests done/total per request type, counted at the LM's cache hook, inner calls not double-counted."""

from __future__ import annotations

from types import SimpleNamespace

from harness.evaluate.lmeval_worker import _instrument, _watch_requests


class FakeHook:
    def __init__(self):
        self.calls = []

    def add_partial(self, attr, req, res):
        self.calls.append(attr)


class FakeLM:
    """Answers like lm-eval's TemplateAPI: one add_partial per request; rolling goes through loglikelihood."""

    def __init__(self):
        self.cache_hook = FakeHook()

    def loglikelihood(self, requests):
        out = []
        for r in requests:
            self.cache_hook.add_partial("loglikelihood", r, (0.0, True))
            out.append((0.0, True))
        return out

    def loglikelihood_rolling(self, requests):
        out = []
        for r in requests:
            self.loglikelihood([r, r])  # windows: not requests of their own
            self.cache_hook.add_partial("loglikelihood_rolling", r, -1.0)
            out.append(-1.0)
        return out


class Recorder:
    made: list = []

    def __init__(self, what, unit, total=None, **kw):
        self.what, self.unit, self.total, self.seen = what, unit, total, []
        Recorder.made.append(self)

    def update(self, done, total=None, force=False, **extra):
        self.seen.append(done)


def test_requests_counted_per_type_with_their_total():
    Recorder.made = []
    lm = FakeLM()
    _instrument(lm, "dq_arc", Recorder)
    assert lm.loglikelihood(list(range(5))) == [(0.0, True)] * 5
    lm.loglikelihood_rolling(list(range(3)))
    ll, roll = Recorder.made
    assert (ll.what, ll.unit, ll.total) == ("lm-eval dq_arc loglikelihood", "requests", 5)
    assert ll.seen == [0, 1, 2, 3, 4, 5, 5]
    assert roll.what == "lm-eval dq_arc loglikelihood_rolling" and roll.total == 3
    assert roll.seen == [0, 1, 2, 3, 3]  # the 6 inner loglikelihood windows are not counted
    assert lm.cache_hook.calls.count("loglikelihood") == 11  # the real hook still gets every call


def test_watch_wraps_the_evaluator_once_and_instruments_the_lm_it_is_given(monkeypatch):
    seen = {}

    def evaluate(lm=None, limit=None):
        seen["lm"] = lm
        return lm.loglikelihood(["a", "b"])

    mod = SimpleNamespace(evaluate=evaluate)
    monkeypatch.delenv("DQBENCH_PROGRESS_FILE", raising=False)
    _watch_requests(mod, "t1")
    _watch_requests(mod, "t2")  # per task: wraps the original, not the previous wrapper
    assert mod._dq_orig_evaluate is evaluate
    lm = FakeLM()
    assert mod.evaluate(lm=lm) == [(0.0, True)] * 2
    assert seen["lm"] is lm and type(lm.cache_hook).__name__ == "CountingHook"


def test_progress_lines_reach_the_file(monkeypatch, tmp_path):
    import json

    path = tmp_path / "p.jsonl"
    monkeypatch.setenv("DQBENCH_PROGRESS_FILE", str(path))
    mod = SimpleNamespace(evaluate=lambda lm=None: lm.loglikelihood(list(range(4))))
    _watch_requests(mod, "dq_hs")
    mod.evaluate(lm=FakeLM())
    recs = [json.loads(x) for x in path.read_text().splitlines()]
    assert recs[0]["done"] == 0 and recs[-1]["done"] == 4 and recs[-1]["total"] == 4
    assert recs[-1]["what"] == "lm-eval dq_hs loglikelihood"

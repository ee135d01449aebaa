"""The load generator's workload requests against the fake OpenAI server (a real subprocess on loopback):
streamed chat conversations over /v1/chat/completions, and requests with their own output lengths."""

import sys

import pytest

from harness.measure.loadgen import LoadGenerator
from harness.measure.workloads import Conversation, Request
from harness.serve.base import free_port, launch


@pytest.fixture
def fake(tmp_path):
    port = free_port()
    args = [sys.executable, "-m", "tests.fakes.openai_server", "--port", str(port), "--ttft", "0.2", "--itl", "0.01"]
    h = launch("fake", args, {}, port, "fake", tmp_path / "fake.log", "/health", 30)
    yield h
    h.stop(grace=2)


def conversation(words: int, turns: int) -> Conversation:
    msgs: list[dict] = []
    out = []
    for t in range(1, turns + 1):
        msgs = [*msgs, {"role": "user", "content": " ".join(["word"] * words)}]
        out.append(Request(messages=msgs, max_tokens=5, turn=t))
        msgs = [*msgs, {"role": "assistant", "content": " ".join(["reply"] * 3)}]
    return Conversation(out)


def test_chat_turns_stream_and_time_each_turn(fake):
    gen = LoadGenerator(fake.base_url, "fake", output_tokens=99, timeout=30)
    recs = gen.records("concurrency", [conversation(4, 3) for _ in range(2)], 2)
    assert len(recs) == 6 and all(r.ok for r in recs)
    # the opening role chunk (sent at once) is no token: TTFT waits for the first content, 0.2 s
    assert all(r.ttft >= 0.19 for r in recs)
    assert all(r.output_tokens == 5 and r.chunks == 5 and len(r.itl) == 4 for r in recs)
    # the turns of a conversation go one after another, each with the history before it
    for t in (1, 2, 3):
        assert {r.prompt_tokens for r in recs if r.turn == t} == {4 * t + 3 * (t - 1)}
    first = sorted((r for r in recs if r.turn), key=lambda r: r.start)
    by_conv = [r for r in first if r.turn == 1]
    assert len(by_conv) == 2 and max(r.start for r in by_conv) < min(r.end for r in by_conv)  # 2 at once
    for t in (2, 3):
        starts = sorted(r.start for r in recs if r.turn == t)
        ends_before = sorted(r.end for r in recs if r.turn == t - 1)
        assert all(s >= e - 1e-6 for s, e in zip(starts, ends_before, strict=True))


def test_chat_level_reports_per_turn_figures(fake):
    gen = LoadGenerator(fake.base_url, "fake", output_tokens=5, timeout=30)
    lv = gen.synchronous([conversation(2, 2), conversation(2, 2)])
    assert (lv.requests, lv.completed) == (4, 4)
    assert [t.turn for t in lv.turns] == [1, 2]
    assert lv.turns[1].prompt_tokens > lv.turns[0].prompt_tokens
    assert 190 <= lv.turns[0].ttft_ms.p50 <= 400


def test_requests_carry_their_own_output_length(fake):
    gen = LoadGenerator(fake.base_url, "fake", output_tokens=7, timeout=30)
    recs = gen.records(
        "synchronous", [Request(prompt=list(range(10)), max_tokens=n) for n in (2, 9)] + [list(range(4))], 1
    )
    assert [r.output_tokens for r in recs] == [2, 9, 7]  # a plain prompt keeps the generator's length
    assert [r.prompt_tokens for r in recs] == [10, 10, 4]
    assert all(r.turn == 0 for r in recs)


def test_a_failed_turn_ends_its_conversation(tmp_path):
    port = free_port()
    args = [sys.executable, "-m", "tests.fakes.openai_server", "--port", str(port), "--model", "other"]
    h = launch("fake", args, {}, port, "other", tmp_path / "fake.log", "/health", 30)
    try:
        recs = LoadGenerator(h.base_url, "fake", output_tokens=2, timeout=30).records(
            "synchronous", [conversation(2, 3)], 1
        )
    finally:
        h.stop(grace=2)
    assert len(recs) == 1 and not recs[0].ok and "HTTP 400" in recs[0].error

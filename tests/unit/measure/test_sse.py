"""The SSE event reader: token chunks are recognised without a JSON parse, everything else is parsed in full,
and both read the same chunks as json.loads would."""

import json

import pytest

from harness.measure.loadgen import _handle_event
from harness.measure.request import RequestRecord


def read(*events: bytes) -> RequestRecord:
    rec = RequestRecord(ok=False, start=0.0, end=0.0)
    last = 0.0
    for e in events:
        last = _handle_event(rec, e, 0.0, last)
    return rec


VLLM_CHUNK = json.dumps(
    {"id": "cmpl-1", "object": "text_completion", "choices": [{"index": 0, "text": " a"}], "usage": None}
).encode()
LLAMA_CHUNK = b'{"choices":[{"text":"b","index":0}],"created":1,"id":"x","object":"text_completion"}'
USAGE = json.dumps({"id": "x", "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3}}).encode()


@pytest.mark.parametrize(
    ("event", "steps"),
    [
        (b"data: " + VLLM_CHUNK, 1),  # vLLM: "usage": null in every chunk
        (b"data:" + LLAMA_CHUNK, 1),  # compact JSON, no space after data:
        (b'data: {"choices" :\n [ {"text": ""}]}', 1),  # an empty text is still a decoding step
        (b'data: {"choices": [], "usage": null}', 0),
        (b'data: {"choices": null}', 0),
        (b'data: {"text": "the word \\"choices\\": [1]"}', 0),  # a key's name inside a string is no key
        (b'data: {"error": {"message": "boom"}}', 0),
        (b": ping", 0),
        (b"data: [DONE]", 0),
    ],
)
def test_token_steps(event, steps):
    assert read(event).chunks == steps


def test_usage_block_is_read_in_full():
    rec = read(b"data: " + VLLM_CHUNK, b"data: " + LLAMA_CHUNK, b"data: " + VLLM_CHUNK, b"data: " + USAGE)
    assert rec.chunks == 3 and len(rec.itl) == 2 and rec.ttft is not None
    assert (rec.prompt_tokens, rec.output_tokens) == (7, 3)


def test_a_chunk_carrying_usage_and_a_token_counts_both():
    both = json.dumps({"choices": [{"text": "c"}], "usage": {"prompt_tokens": 5, "completion_tokens": 1}}).encode()
    rec = read(b"data: " + both)
    assert rec.chunks == 1 and rec.prompt_tokens == 5


def test_malformed_json_outside_the_fast_path_still_raises():
    with pytest.raises(json.JSONDecodeError):
        read(b'data: {"usage": {"prompt_tokens": ')

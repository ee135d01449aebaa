"""send_one: a stale pooled connection (closed by the server before the request reached it) is sent again
once; any other failure, or a failure after the server answered, is not."""

import asyncio

import aiohttp
import pytest

from harness.measure.loadgen import send_one


class FakeContent:
    def __init__(self, chunks):
        self.chunks = chunks

    async def iter_any(self):
        for c in self.chunks:
            yield c


class FakeResp:
    status = 200

    def __init__(self, chunks):
        self.content = FakeContent(chunks)

    async def __aenter__(self):
        return self

    async def __aexit__(self, *a):
        return False


class Session:
    """Raises `errors` in turn on entering post(), then streams one token."""

    def __init__(self, errors):
        self.errors, self.calls = list(errors), 0

    def post(self, *a, **k):
        self.calls += 1
        if self.errors:
            err = self.errors.pop(0)

            class Boom:
                async def __aenter__(self):
                    raise err

                async def __aexit__(self, *a):
                    return False

            return Boom()
        return FakeResp([b'data: {"choices": [{"text": "x"}]}\n\n', b"data: [DONE]\n\n"])


def run(session):
    return asyncio.run(send_one(session, "http://x/v1/completions", {}, 5.0))


def test_stale_connection_is_sent_again_once():
    s = Session([aiohttp.ClientOSError("Can not write request body")])
    rec = run(s)
    assert rec.ok and rec.retried and s.calls == 2 and rec.error is None


@pytest.mark.parametrize(
    "errors",
    [
        [aiohttp.ClientOSError("a"), aiohttp.ClientOSError("b")],  # twice: a real failure
        [TimeoutError()],  # not a stale connection
    ],
)
def test_other_failures_count(errors):
    s = Session(errors)
    rec = run(s)
    assert not rec.ok and rec.error and s.calls == min(2, 1 + isinstance(errors[0], aiohttp.ClientOSError))

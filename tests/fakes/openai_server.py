"""A fake OpenAI-compatible completions server with controllable timing, for load-generator and
server-lifecycle tests. Run as `python -m tests.fakes.openai_server --port P [--ttft S] [--itl S]
[--fail-every N] [--startup S] [--spawn-child] [--die-after N --die-mode exit|engine --death-log FILE]
[--slots N]`.

Streaming /v1/completions emits `max_tokens` chunks: the first after --ttft seconds, then one every
--itl seconds, then a usage block and [DONE]. Every --fail-every-th request answers HTTP 500.
Streaming /v1/chat/completions does the same in chat chunks (`delta.content`), after an opening chunk that
names the role and carries no token, sent at once (as vLLM and llama-server open a chat stream); its
prompt_tokens are the words of every message, so a later turn of a conversation reports more.
--spawn-child starts a grandchild process (to check that group kills reach children).
--die-after N: the N-th completion request kills the "engine": the server prints --death-log (a real
engine's dying words) and either exits (--die-mode exit) or stays up answering HTTP 500 to completions
and 503 to /health, as vLLM's API server does once its engine core has died (--die-mode engine).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time

from aiohttp import web


def build_app(
    ttft: float,
    itl: float,
    fail_every: int,
    model: str,
    die_after: int = 0,
    die_mode: str = "exit",
    death_log: str = "",
    slots: int = 0,
) -> web.Application:
    state = {"n": 0, "ready_at": 0.0, "dead": False}
    # --slots N: at most N requests generate at once, the rest wait (before their TTFT), as in an engine
    # whose batch is full: a fixed capacity of N / (ttft + (max_tokens - 1) * itl) requests/s
    gate = asyncio.Semaphore(slots) if slots else None

    async def health(_req: web.Request) -> web.Response:
        ok = time.monotonic() >= state["ready_at"] and not state["dead"]
        return web.Response(status=200 if ok else 503)

    async def models(_req: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": model, "object": "model", "max_model_len": 2048}]})

    async def completions(req: web.Request) -> web.StreamResponse:
        body = await req.json()
        state["n"] += 1
        if die_after and state["n"] >= die_after and not state["dead"]:
            state["dead"] = True
            print(death_log or "RuntimeError: injected engine death", flush=True)
            if die_mode == "exit":
                os._exit(1)
        if state["dead"]:
            print(
                "vllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered an issue. "
                "See stack trace (above) for the root cause.",
                flush=True,
            )
            return web.json_response({"error": "EngineDeadError"}, status=500)
        if fail_every and state["n"] % fail_every == 0:
            return web.json_response({"error": "injected failure"}, status=500)
        if body.get("model") != model:
            return web.json_response({"error": f"model {body.get('model')!r} not found"}, status=404)
        n = int(body.get("max_tokens", 16))
        prompt = body.get("prompt")
        p_tokens = len(prompt) if isinstance(prompt, list) else len(str(prompt).split())
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(req)
        if gate is not None:
            async with gate:
                return await generate(resp, n, p_tokens)
        return await generate(resp, n, p_tokens)

    def text_chunk(i: int) -> dict:
        return {"id": "x", "object": "text_completion", "choices": [{"index": 0, "text": f" t{i}"}]}

    def chat_chunk(i: int) -> dict:
        return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": f" t{i}"}}]}

    async def generate(resp: web.StreamResponse, n: int, p_tokens: int, piece=text_chunk) -> web.StreamResponse:
        """The stream after the headers: the first token after --ttft, one every --itl, usage, [DONE]."""
        await asyncio.sleep(ttft)
        for i in range(n):
            if i:
                await asyncio.sleep(itl)
            chunk = piece(i)
            await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
        usage = {"prompt_tokens": p_tokens, "completion_tokens": n, "total_tokens": p_tokens + n}
        await resp.write(f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def chat_completions(req: web.Request) -> web.StreamResponse:
        body = await req.json()
        msgs = body.get("messages")
        if body.get("model") != model or not isinstance(msgs, list) or not msgs:
            return web.json_response({"error": "unknown model or no messages"}, status=400)
        n = int(body.get("max_tokens", 16))
        p_tokens = sum(len(str(m.get("content", "")).split()) for m in msgs)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(req)
        opening = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"role": "assistant"}}]}
        await resp.write(f"data: {json.dumps(opening)}\n\n".encode())
        return await generate(resp, n, p_tokens, chat_chunk)

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app["state"] = state
    return app


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ttft", type=float, default=0.05)
    ap.add_argument("--itl", type=float, default=0.01)
    ap.add_argument("--fail-every", type=int, default=0)
    ap.add_argument("--startup", type=float, default=0.0, help="seconds before /health answers 200")
    ap.add_argument("--model", default="fake")
    ap.add_argument("--spawn-child", action="store_true")
    ap.add_argument("--ignore-sigterm", action="store_true", help="behave like a hung server: only SIGKILL works")
    ap.add_argument("--exit-code", type=int, default=None, help="exit at once with this code (start-up failure)")
    ap.add_argument("--die-after", type=int, default=0, help="the engine dies on this completion request")
    ap.add_argument("--die-mode", choices=("exit", "engine"), default="exit")
    ap.add_argument("--death-log", default=None, help="file whose text the dying engine prints")
    ap.add_argument("--slots", type=int, default=0, help="at most this many requests generate at once (0: no limit)")
    a = ap.parse_args()
    print(f"fake server pid {os.getpid()} port {a.port}", flush=True)
    if a.exit_code is not None:
        print("fatal: injected start-up failure", flush=True)
        sys.exit(a.exit_code)
    if a.spawn_child:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
        print(f"child pid {child.pid}", flush=True)
    death_log = open(a.death_log).read().rstrip("\n") if a.death_log else ""
    app = build_app(a.ttft, a.itl, a.fail_every, a.model, a.die_after, a.die_mode, death_log, a.slots)
    app["state"]["ready_at"] = time.monotonic() + a.startup
    if a.ignore_sigterm:
        import signal

        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    web.run_app(app, host="127.0.0.1", port=a.port, print=None, handle_signals=not a.ignore_sigterm)


if __name__ == "__main__":
    main()

"""Teacher generations over the OpenAI chat endpoint: order kept, usage counted, written atomically,
and a teacher that answers nothing is an error rather than an empty training set."""

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from harness.distill.generate import generate
from harness.errors import StageError


def serve(answer):
    seen = []

    class H(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path != "/v1/chat/completions":
                self.send_response(404)
                self.end_headers()
                return
            seen.append(body)
            q = body["messages"][0]["content"]
            out = {
                "choices": [{"message": {"role": "assistant", "content": answer(q)}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": len(q.split()), "completion_tokens": 3},
            }
            data = json.dumps(out).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, seen


def test_generations_in_prompt_order_with_usage(tmp_path):
    srv, seen = serve(lambda q: f"answer to {q}")
    try:
        prompts = [f"question {i}?" for i in range(10)]
        info = generate(
            f"http://127.0.0.1:{srv.server_port}/v1",
            "dq-teacher",
            prompts,
            tmp_path / "g.jsonl",
            max_tokens=32,
            temperature=0.0,
            seed=3,
            concurrency=4,
        )
    finally:
        srv.shutdown()
    rows = [json.loads(line) for line in (tmp_path / "g.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in rows] == prompts and rows[3]["completion"] == "answer to question 3?"
    assert info["prompts"] == 10 and info["completion_tokens"] == 30 and info["prompt_tokens"] == 20
    assert all(b["model"] == "dq-teacher" and b["max_tokens"] == 32 and b["temperature"] == 0.0 for b in seen)
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".g.jsonl.*"))


def test_empty_answers_everywhere_is_an_error(tmp_path):
    srv, _ = serve(lambda q: "   ")
    try:
        with pytest.raises(StageError, match="empty text"):
            generate(
                f"http://127.0.0.1:{srv.server_port}/v1",
                "m",
                ["a?", "b?"],
                tmp_path / "g.jsonl",
                max_tokens=8,
                temperature=0.0,
                seed=0,
            )
    finally:
        srv.shutdown()
    assert not (tmp_path / "g.jsonl").exists()


def test_unreachable_teacher_is_a_stage_error(tmp_path):
    with pytest.raises(StageError, match="teacher generation failed"):
        generate(
            "http://127.0.0.1:9/v1", "m", ["a?"], tmp_path / "g.jsonl", max_tokens=8, temperature=0.0, seed=0, timeout=2
        )


def test_generation_reports_prompts_answered_of_total(tmp_path):
    srv, _ = serve(lambda q: "ok")
    recs = []
    try:
        generate(
            f"http://127.0.0.1:{srv.server_port}/v1",
            "m",
            [f"q{i}" for i in range(6)],
            tmp_path / "g.jsonl",
            max_tokens=8,
            temperature=0.0,
            seed=0,
            concurrency=3,
            on_progress=recs.append,
        )
    finally:
        srv.shutdown()
    assert recs[0]["done"] == 0 and recs[-1]["done"] == 6
    assert {r["total"] for r in recs} == {6} and recs[0]["what"] == "teacher answers"
    assert [r["done"] for r in recs] == sorted(r["done"] for r in recs)  # never backwards
    assert recs[-1]["tokens"] == 18


GENERATE = """
import json, sys
from pathlib import Path
from harness.distill.generate import generate
prompts = [f"question {i}?" for i in range(6)]
info = generate(sys.argv[1], "dq-teacher", prompts, Path(sys.argv[2]), max_tokens=8, temperature=0.0, seed=0,
                concurrency=2)
print(json.dumps(info), flush=True)
"""


def test_two_cells_generating_the_same_file_ask_the_teacher_once(tmp_path):
    def slow(q):
        time.sleep(0.3)  # 6 prompts, 2 at a time: about a second, so the second process arrives mid-way
        return f"answer to {q}"

    srv, seen = serve(slow)
    repo = Path(__file__).resolve().parents[3]
    out = tmp_path / "gens" / "abc.jsonl"
    try:
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", textwrap.dedent(GENERATE), f"http://127.0.0.1:{srv.server_port}/v1", str(out)],
                cwd=repo,
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={**os.environ, "PYTHONPATH": str(repo)},
            )
            for _ in range(2)
        ]
        infos = []
        for p in procs:
            o, err = p.communicate(timeout=60)
            assert p.returncode == 0, err
            infos.append(json.loads(o.splitlines()[-1]))
    finally:
        srv.shutdown()
    assert len(seen) == 6  # one request per prompt in all: the second process read the first one's file
    assert sorted(i["reused"] for i in infos) == [False, True]
    assert all(i["prompts"] == 6 and i["completion_tokens"] == 18 for i in infos)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["prompt"] for r in rows] == [f"question {i}?" for i in range(6)]
    assert sorted(p.name for p in out.parent.iterdir()) == ["abc.jsonl", "abc.jsonl.lock"]


def test_a_file_for_other_prompts_or_cut_short_is_asked_again(tmp_path):
    srv, seen = serve(lambda q: "ok")
    out = tmp_path / "g.jsonl"
    url = f"http://127.0.0.1:{srv.server_port}/v1"
    try:
        generate(url, "m", ["a?", "b?"], out, max_tokens=8, temperature=0.0, seed=0)
        assert len(seen) == 2
        assert generate(url, "m", ["a?", "b?"], out, max_tokens=8, temperature=0.0, seed=0)["reused"]
        assert len(seen) == 2
        out.write_text(out.read_text().splitlines()[0] + "\n")  # one answer missing
        info = generate(url, "m", ["a?", "b?"], out, max_tokens=8, temperature=0.0, seed=0)
        assert not info["reused"] and len(seen) == 4 and len(out.read_text().splitlines()) == 2
    finally:
        srv.shutdown()

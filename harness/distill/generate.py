"""The teacher answers the prompt set through the served engine's OpenAI chat endpoint (the teacher's
own chat template applies). Used by `sft` and `gkd` students; the result is cached by content, so a
second student of the same teacher and prompt set reuses it. Two cells generating the same file at once:
the second waits on the file's lock (`NAME.lock`) and reads what the first wrote; the file is written at a
unique temporary name and renamed into place, and used only when it holds one answer per prompt, in order.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from harness.errors import StageError
from harness.locks import build_once, wait_reporter
from harness.proc import ProgressCallback, WorkerProgress


def _ask(
    base_url: str, model: str, prompt: str, max_tokens: int, temperature: float, seed: int, timeout: float
) -> dict:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": temperature,
        "seed": seed,
    }
    req = urllib.request.Request(
        f"{base_url}/chat/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=timeout) as r:
        out = json.loads(r.read())
    choice, usage = out["choices"][0], out.get("usage") or {}
    return {
        "prompt": prompt,
        "completion": choice["message"]["content"] or "",
        "finish_reason": choice.get("finish_reason"),
        "prompt_tokens": usage.get("prompt_tokens", 0),
        "completion_tokens": usage.get("completion_tokens", 0),
    }


def read_generations(path: Path, prompts: list[str]) -> list[dict] | None:
    """The rows of a generations file when it answers exactly `prompts`, in order; None otherwise."""
    try:
        rows = [json.loads(line) for line in path.read_text().splitlines()]
    except (OSError, ValueError):
        return None
    if [r.get("prompt") if isinstance(r, dict) else None for r in rows] != prompts:
        return None
    return rows


def summary(path: Path, rows: list[dict], wall: float, reused: bool) -> dict:
    done = sum(r["completion_tokens"] for r in rows)
    return {
        "path": str(path),
        "prompts": len(rows),
        "empty": sum(1 for r in rows if not r["completion"].strip()),
        "completion_tokens": done,
        "prompt_tokens": sum(r["prompt_tokens"] for r in rows),
        "wall_s": round(wall, 2),
        "output_tok_s": round(done / wall, 1) if wall and not reused else None,
        "reused": reused,
    }


def generate(
    base_url: str,
    model: str,
    prompts: list[str],
    out: Path,
    *,
    max_tokens: int,
    temperature: float,
    seed: int,
    concurrency: int = 8,
    timeout: float = 600,
    on_progress: ProgressCallback | None = None,
) -> dict:
    """Write one JSONL row per prompt (in prompt order) to `out`, atomically; return a summary.
    `base_url` is the OpenAI base the server handle gives (".../v1"), as the load generator uses it.
    `on_progress` gets prompts answered / total (harness/progress.py renders it). When another process
    wrote `out` for the same prompts (waited for on its lock), its rows are used (`reused` in the summary)."""
    t0 = time.monotonic()
    out.parent.mkdir(parents=True, exist_ok=True)

    def valid(path: Path) -> bool:
        return read_generations(path, prompts) is not None

    def build(tmp: Path) -> None:
        rows = _ask_all(
            base_url,
            model,
            prompts,
            max_tokens=max_tokens,
            temperature=temperature,
            seed=seed,
            concurrency=concurrency,
            timeout=timeout,
            on_progress=on_progress,
        )
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))

    asked = build_once(
        out, what=f"teacher generations {out.name}", valid=valid, build=build, on_wait=wait_reporter(None)
    )
    return summary(out, read_generations(out, prompts) or [], time.monotonic() - t0, not asked)


def _ask_all(
    base_url: str,
    model: str,
    prompts: list[str],
    *,
    max_tokens: int,
    temperature: float,
    seed: int,
    concurrency: int,
    timeout: float,
    on_progress: ProgressCallback | None,
) -> list[dict]:
    report = WorkerProgress("teacher answers", "prompts", total=len(prompts), every=1.0, callback=on_progress)
    answered, lock = {"n": 0, "tokens": 0}, threading.Lock()

    def ask(p: str) -> dict:
        row = _ask(base_url, model, p, max_tokens, temperature, seed, timeout)
        with lock:
            answered["n"] += 1
            answered["tokens"] += row["completion_tokens"]
            report.update(answered["n"], tokens=answered["tokens"])  # in the lock: counts never go backwards
        return row

    report.update(0, force=True)
    try:
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            rows = list(pool.map(ask, prompts))
    except OSError as exc:
        raise StageError("distill", f"teacher generation failed at {base_url}: {exc}") from exc
    if all(not r["completion"].strip() for r in rows):
        raise StageError("distill", f"the teacher answered every one of {len(rows)} prompts with empty text")
    return rows

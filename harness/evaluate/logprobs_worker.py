"""Worker: prompt logprobs of a cell on fixed token windows -> a compact top-k dump (harness.evaluate.shift),
started by the shift step (harness/evaluate/reference.py) in the serving environment.

How logprobs are obtained follows the serving plugin's `scoring()`: `local-completions` asks the server
(`echo` + `logprobs: k` + `return_tokens_as_token_ids`, vLLM's OpenAI server); `dq-llamacpp` reads every
position's logits from llama.cpp in-process (llama-server returns no prompt logprobs).

`LogprobsJob` in, the .npz dump written atomically at `out`, `LogprobsDump` back. Importable without numpy or
llama.cpp (the parent builds the job with it).
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.jobs import Job, Record
from harness.serve.scoring import ModelArg, Scoring


class LogprobsDump(Record):
    out: str  # the .npz dump (harness/evaluate/shift.save_dump)
    positions: int  # scored token positions over all windows
    k: int


class LogprobsJob(Job[LogprobsDump]):
    worker = "harness.evaluate.logprobs_worker:work"

    scoring: Scoring
    windows: list[list[int]]  # token ids; each window's first token is context only
    k: int
    out: str


Arrays = tuple[Any, Any, Any, Any]  # numpy arrays: target ids, their logprobs, top-k ids, top-k logprobs


def via_server(model_args: dict[str, ModelArg], windows: list[list[int]], k: int) -> Iterator[Arrays]:
    import numpy as np

    for ids in windows:
        body = {
            "model": model_args["model"],
            "prompt": ids,
            "echo": True,
            "logprobs": k,
            "max_tokens": 1,
            "temperature": 0.0,
            "return_tokens_as_token_ids": True,
        }
        req = urllib.request.Request(
            str(model_args["base_url"]), data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=600) as r:
            lp = json.loads(r.read())["choices"][0]["logprobs"]
        n = len(ids)  # the answer also holds the one generated token: drop it
        toks = [int(t.split(":", 1)[1]) for t in lp["tokens"][:n]]
        if toks != ids:
            raise SystemExit("server echoed other tokens than were sent: its logprobs cannot be aligned")
        rows_ids, rows_lp = [], []
        for top in lp["top_logprobs"][1:n]:
            items = sorted(((int(t.split(":", 1)[1]), v) for t, v in top.items()), key=lambda x: -x[1])[:k]
            if len(items) < k:
                raise SystemExit(f"server returned {len(items)} top logprobs, fewer than k={k}")
            rows_ids.append([i for i, _ in items])
            rows_lp.append([v for _, v in items])
        yield np.array(ids[1:]), np.array(lp["token_logprobs"][1:n], np.float64), np.array(rows_ids), np.array(rows_lp)


def via_llamacpp(model_args: dict[str, ModelArg], windows: list[list[int]], k: int) -> Iterator[Arrays]:
    import numpy as np
    from llama_cpp import Llama

    from harness.evaluate.shift import topk_from_logits
    from harness.spec.kv_cache import llama_kv_kwargs

    n_ctx = max(len(w) for w in windows)
    llm = Llama(
        model_path=model_args["model_path"],
        n_ctx=n_ctx,
        n_batch=n_ctx,
        logits_all=True,
        n_threads=model_args.get("n_threads"),
        verbose=False,
        seed=0,
        **llama_kv_kwargs(model_args),  # axes.kv_cache: the served cell's cache types
    )
    try:
        for ids in windows:
            llm.reset()
            llm.eval(ids)
            logits = np.asarray(llm.scores[: len(ids) - 1])  # row i predicts token i+1
            tgt = np.array(ids[1:])
            token_lp, top_ids, top_lp = topk_from_logits(logits, tgt, k)
            yield tgt, token_lp, top_ids, top_lp
    finally:
        llm.close()


# `dq-vllm` (the engine in the evaluate worker, issue #31) carries the server's address too: a few windows
# are not worth a second engine start
BACKENDS = {
    "local-completions": via_server,
    "dq-local-completions": via_server,
    "dq-vllm": via_server,
    "dq-llamacpp": via_llamacpp,
}


def work(job: LogprobsJob) -> LogprobsDump:
    import numpy as np

    from harness.evaluate.shift import save_dump

    lm = job.scoring.model
    if lm not in BACKENDS:
        raise SystemExit(f"no logprob backend for lm-eval model {lm!r} (known: {', '.join(BACKENDS)})")
    parts = list(BACKENDS[lm](job.scoring.model_args, job.windows, job.k))
    save_dump(Path(job.out), *(np.concatenate([p[i] for p in parts]) for i in range(4)))
    positions = sum(len(p[0]) for p in parts)
    print(f"{positions} positions, top-{job.k}")
    return LogprobsDump(out=job.out, positions=positions, k=job.k)

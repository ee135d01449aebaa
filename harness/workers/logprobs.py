"""Worker: prompt logprobs of a cell on fixed token windows -> a compact top-k dump (harness.evaluate.shift).

How logprobs are obtained follows the serving plugin's `scoring()`: `local-completions` asks the server
(`echo` + `logprobs: k` + `return_tokens_as_token_ids`, vLLM's OpenAI server); `dq-llamacpp` reads every
position's logits from llama.cpp in-process (llama-server returns no prompt logprobs).

Input: a JSON config (lm, model_args, windows of token ids, k, out). Output: the .npz dump, atomically.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import numpy as np

from harness.proc import worker_main


def via_server(model_args: dict, windows: list[list[int]], k: int):
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
            model_args["base_url"], data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
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


def via_llamacpp(model_args: dict, windows: list[list[int]], k: int):
    from llama_cpp import Llama

    from harness.evaluate.shift import topk_from_logits

    n_ctx = max(len(w) for w in windows)
    llm = Llama(
        model_path=model_args["model_path"],
        n_ctx=n_ctx,
        n_batch=n_ctx,
        logits_all=True,
        n_threads=model_args.get("n_threads"),
        verbose=False,
        seed=0,
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


BACKENDS = {"local-completions": via_server, "dq-local-completions": via_server, "dq-llamacpp": via_llamacpp}


def work(cfg: dict) -> None:

    from harness.evaluate.shift import save_dump

    if cfg["lm"] not in BACKENDS:
        raise SystemExit(f"no logprob backend for lm-eval model {cfg['lm']!r} (known: {', '.join(BACKENDS)})")
    parts = list(BACKENDS[cfg["lm"]](cfg["model_args"], cfg["windows"], cfg["k"]))
    save_dump(Path(cfg["out"]), *(np.concatenate([p[i] for p in parts]) for i in range(4)))
    print(f"{sum(len(p[0]) for p in parts)} positions, top-{cfg['k']}")


if __name__ == "__main__":
    worker_main(work)

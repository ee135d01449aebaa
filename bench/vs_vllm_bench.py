"""Benchmark: dqbench's load generator vs vLLM's own serving benchmark, against the same server.

Starts one vLLM server for the embedded model, then for each concurrency level runs vLLM's
`vllm.benchmarks.serve` (random dataset, --ignore-eos) and dqbench's LoadGenerator with the same input
and output lengths, request count and concurrency, alternating which goes first. Prints output tok/s
and TTFT p50 of both and their ratio (goal: within +-5%).

    ./dq python bench/vs_vllm_bench.py [--levels 1 4 16] [--requests 32] [--input 128] [--output 64]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from harness.measure.loadgen import LoadGenerator
from harness.measure.prompts import token_prompts
from harness.result import Artefact
from harness.serve.vllm import VLLMServer
from harness.settings import load_settings
from harness.spec.serving import VLLMServing

VLLM_BENCH = (
    "import sys, argparse\nfrom vllm.benchmarks.serve import add_cli_args, main\n"
    "from vllm.utils.argparse_utils import FlexibleArgumentParser\n"
    "p = FlexibleArgumentParser(); add_cli_args(p); main(p.parse_args(sys.argv[1:]))\n"
)


def vllm_bench(python: str, handle, model_dir: str, n: int, conc: int, inp: int, out: int, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        args = [
            "--backend",
            "vllm",
            "--base-url",
            f"http://127.0.0.1:{handle.port}",
            "--model",
            model_dir,
            "--served-model-name",
            handle.model_name,
            "--dataset-name",
            "random",
            "--random-input-len",
            str(inp),
            "--random-output-len",
            str(out),
            "--num-prompts",
            str(n),
            "--max-concurrency",
            str(conc),
            "--request-rate",
            "inf",
            "--ignore-eos",
            "--num-warmups",
            "0",
            "--seed",
            str(seed),
            "--save-result",
            "--result-dir",
            d,
            "--result-filename",
            "r.json",
            "--disable-tqdm",
            "--temperature",
            "0",
        ]
        r = subprocess.run([python, "-c", VLLM_BENCH, *args], capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"vllm bench failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
        return json.loads((Path(d) / "r.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--input", type=int, default=128)
    ap.add_argument("--output", type=int, default=64)
    ap.add_argument("--eager", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument(
        "--prompts",
        choices=["text", "random"],
        default="text",
        help="text: dqbench's real-text windows; random: token ids built like vLLM's random dataset "
        "((offset + i + arange(len)) % vocab), to separate prompt effects from client effects",
    )
    a = ap.parse_args()
    settings = load_settings()
    model_dir = str(settings.models_dir / "smollm2-135m-instruct")
    server = VLLMServer(VLLMServing(enforce_eager=a.eager), settings.python, "cpu")
    art = Artefact(model=model_dir, dtype="bfloat16", quantization=None, size_bytes=None, bits_per_weight=16)
    log = Path(tempfile.gettempdir()) / "dqbench-vs-vllm-server.log"
    h = server.start(art, "bench", log)
    print(
        f"server up in {h.startup_s:.1f} s (eager={a.eager}, prompts={a.prompts}); {a.requests} requests/level, "
        f"{a.input} in / {a.output} out tokens",
        flush=True,
    )
    gen = LoadGenerator(h.base_url, "bench", a.output, 600, server.request_extras)
    rows = []
    try:
        gen.warmup(token_prompts(model_dir, "pydoc", 4, a.input, 99))
        for i, c in enumerate(a.levels):
            if a.prompts == "text":
                prompts = token_prompts(model_dir, "pydoc", a.requests, a.input, 1000 + c)
            else:
                rng = random.Random(c)
                vocab = 49152
                prompts = [
                    [(off + i + j) % vocab for j in range(a.input)]
                    for i, off in enumerate(rng.randrange(vocab) for _ in range(a.requests))
                ]
            order = ["ours", "vllm"] if i % 2 == 0 else ["vllm", "ours"]
            res = {}
            for who in order:
                if who == "ours":
                    lv = gen.concurrency(prompts, c)
                    res["ours"] = (lv.output_tok_s, lv.ttft_ms.p50, lv.failed)
                else:
                    v = vllm_bench(settings.python, h, model_dir, a.requests, c, a.input, a.output, c)
                    res["vllm"] = (v["output_throughput"], v["median_ttft_ms"], v["num_prompts"] - v["completed"])
            rows.append((c, res))
            o, v = res["ours"], res["vllm"]
            print(
                f"concurrency {c:>3}: tok/s ours {o[0]:7.1f} vllm {v[0]:7.1f} ratio {o[0] / v[0]:.3f} | "
                f"TTFT p50 ours {o[1]:7.1f} ms vllm {v[1]:7.1f} ms ratio {o[1] / v[1]:.3f} | "
                f"failed {o[2]}/{v[2]}",
                flush=True,
            )
    finally:
        h.stop()
    worst = max(max(abs(r["ours"][0] / r["vllm"][0] - 1), abs(r["ours"][1] / r["vllm"][1] - 1)) for _, r in rows)
    print(f"largest deviation from vLLM's own benchmark: {worst * 100:.1f}% (goal <= 5%)")
    sys.exit(0)


if __name__ == "__main__":
    main()

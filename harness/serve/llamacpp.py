"""llama.cpp's own OpenAI-compatible server (`llama-server`) for GGUF cells.

The binary comes from the llama.cpp source vendored in llama-cpp-python's pinned sdist, built by the
set-up (scripts/build_llamacpp.sh) into the cache; DQBENCH_LLAMACPP points at it. Slots (`-np`) are the
sequences decoded together, so the context (`-c`) is slots x per-slot length. The same load generator
measures it, chat workloads through its /v1/chat/completions with the GGUF's own chat template (llama-server
applies it by default). Quality is not scored through it: llama-server ignores `echo` on /v1/completions, so it
returns no prompt logprobs; lm-eval scores the same GGUF file in-process instead (harness/evaluate/llamacpp_lm.py).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from harness.errors import StageError
from harness.result import Artefact
from harness.serve.base import EngineServer, ServerHandle, http_get
from harness.serve.scoring import Scoring
from harness.serve.startup import llamacpp_phases
from harness.settings import REPO_ROOT, load_settings
from harness.spec.kv_cache import engine_kv, quantized_v

# libllama's own start-up line (logged at llama-server verbosity 4, `-lv 4`):
# "llama_kv_cache: size =   23.91 MiB (  1024 cells,  30 layers,  2/2 seqs), K (q8_0):   11.95 MiB, V (q8_0): ..."
_KV_LINE = re.compile(r"llama_kv_cache: size = .*?K \((\w+)\):.*?V \((\w+)\):")
_FA_LINE = re.compile(r"llama_context: flash_attn\s*=\s*(\w+)")


def kv_cache_types(log_text: str) -> dict[str, str | None]:
    """The K and V cache types and the flash-attention state llama.cpp logged at start-up (None: not logged)."""
    kv = _KV_LINE.findall(log_text)
    fa = _FA_LINE.findall(log_text)
    return {
        "k": kv[-1][0] if kv else None,
        "v": kv[-1][1] if kv else None,
        "flash_attn": fa[-1] if fa else None,
    }


def llamacpp_bin(name: str) -> Path:
    tools = load_settings().llamacpp_dir
    if tools is None or not (tools / "build" / "bin" / name).is_file():
        raise StageError(
            "serve",
            f"llama.cpp tool {name} is not built (DQBENCH_LLAMACPP={tools}); run ./dq setup, "
            "which builds it into the cache",
        )
    return tools / "build" / "bin" / name


class LlamaCppServer(EngineServer):
    engine = "llamacpp"
    # llama.cpp extension, as in vLLM: generate exactly max_tokens
    request_extras = {"ignore_eos": True}
    # llama-server's HTTP library drops pooled keep-alive connections under load: a request written into
    # one fails before it reaches the engine (measured: 2 of 24 at concurrency 4 even with one resend).
    # A fresh loopback connection per request costs ~0.1 ms, far below any latency measured here.
    http_keepalive = False

    def command(self, artefact: Artefact, port: int, served_name: str, trust_remote_code: bool = False) -> list[str]:
        s = self.spec
        cmd = [
            str(llamacpp_bin("llama-server")),
            "-m",
            artefact.model,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--alias",
            served_name,
            "-c",
            str(s.max_model_len * s.parallel),
            "-np",
            str(s.parallel),
            "-t",
            str(s.threads or os.cpu_count() or 1),
            "-b",
            str(s.batch_size),
            "--no-webui",
        ]
        kv = engine_kv(self.kv_cache, self.engine)
        if kv is not None:
            # axes.kv_cache (issue #27): K and V alike; verbosity 4 makes libllama log the cache it allocated (its
            # types are read back in `inspect`; ~25 lines a request more). A quantized V cache needs flash
            # attention, which llama-server's default `-fa auto` turns on (the plan refuses `-fa off`)
            cmd += ["--cache-type-k", kv, "--cache-type-v", kv, "-lv", "4"]
        for k, v in sorted(s.extra_args.items()):
            flag = "--" + k.replace("_", "-").lstrip("-")
            if v is True:
                cmd.append(flag)
            elif v is not False:
                cmd += [flag, str(v)]
        if self.draft is not None:  # speculative decoding (issue #28): harness/serve/speculative.py
            from harness.serve.speculative import llamacpp_flags

            cmd += llamacpp_flags(self.draft)
        return cmd

    def startup_phases(self, handle: ServerHandle) -> dict[str, float]:
        return llamacpp_phases(handle.log_text(max_bytes=4 * 2**20), handle.startup_s)

    def inspect(self, handle: ServerHandle, artefact: Artefact) -> dict:
        """What the server loaded (/props); a different file or alias makes the cell a mismatch."""
        status, body = http_get(f"http://127.0.0.1:{handle.port}/props")
        props = json.loads(body) if status == 200 else {}
        status, body = http_get(handle.base_url + "/models")
        ids = [m.get("id") for m in json.loads(body).get("data", [])] if status == 200 else []
        loaded = {
            "served_model": ids[0] if ids else None,
            "model_path": props.get("model_path"),
            "model_ftype": props.get("model_ftype"),
            "total_slots": props.get("total_slots"),
            "n_ctx_per_slot": (props.get("default_generation_settings") or {}).get("n_ctx"),
            "build_info": props.get("build_info"),
            # prompt (prefix) caching: /props does not say, so the flag it was started with (llama.cpp's parser
            # matches flags exactly); each request's usage then reports its cached tokens (load levels' sum)
            "cache_prompt": "--no-cache-prompt" not in handle.command,
            "quantization": artefact.quantization,
        }
        kv = engine_kv(self.kv_cache, self.engine)
        if kv is not None:  # what libllama says it allocated, not what was asked for
            types = kv_cache_types(handle.log_head())
            loaded["kv_cache_type_k"], loaded["kv_cache_type_v"] = types["k"], types["v"]
            loaded["flash_attn"] = types["flash_attn"]
        problems = []
        if kv is not None and (loaded["kv_cache_type_k"], loaded["kv_cache_type_v"]) != (kv, kv):
            problems.append(
                f"KV cache K {loaded['kv_cache_type_k']} / V {loaded['kv_cache_type_v']} != planned {kv} "
                "(axes.kv_cache; None: llama-server's log did not say)"
            )
        if handle.model_name not in ids:
            problems.append(f"served models {ids} do not include {handle.model_name!r}")
        if props.get("model_path") and Path(props["model_path"]).resolve() != Path(artefact.model).resolve():
            problems.append(f"model_path {props['model_path']} != planned {artefact.model}")
        if problems:
            raise StageError(
                "serve", "llama-server loaded something other than planned (mismatch): " + "; ".join(problems)
            )
        return loaded

    def evaluate_env(self) -> dict[str, str]:
        """The binding (tools/py) without its own C++ build loads the libllama the set-up built."""
        tools = load_settings().llamacpp_dir
        if not tools:
            return {}
        return {
            "LLAMA_CPP_LIB_PATH": str(tools / "build" / "bin"),
            "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(tools / "py")]),
        }

    def scoring(self, handle: ServerHandle, artefact: Artefact) -> Scoring:
        """How lm-eval scores this cell: in-process on the same GGUF file (the server has no prompt logprobs)."""
        return Scoring(
            model="dq-llamacpp",
            register_module="harness.evaluate.llamacpp_lm",
            model_args={
                "model_path": artefact.model,
                "tokenizer": artefact.tokenizer_src,
                "n_threads": self.spec.threads or os.cpu_count() or 1,
                # generative tasks are sent to the served llama-server
                "base_url": handle.base_url.rstrip("/") + "/completions",
                "model": handle.model_name,
                # a multiple-choice item's question computed once for all its choices (harness/evaluate/
                # llamacpp_lm.py; measured in docs/results/2026-12-07-default-time-avx512.md)
                "context_once": True,
                # axes.kv_cache: the in-process context keeps the same cache types as the server (a quantized V
                # cache needs flash attention, which llama-cpp-python leaves off unless asked)
                **(
                    {"type_k": kv, "type_v": kv, "flash_attn": quantized_v(self.kv_cache, self.engine)}
                    if (kv := engine_kv(self.kv_cache, self.engine)) is not None
                    else {}
                ),
            },
            env=self.evaluate_env(),
            how="lm-eval `dq-llamacpp`: loglikelihoods of the served GGUF file in-process through llama.cpp's "
            "C API (llama-server returns no prompt logprobs: it ignores echo); generations from the cell's "
            "llama-server (/v1/completions, greedy)",
            via="in-process",
        )

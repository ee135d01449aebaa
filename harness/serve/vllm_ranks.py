"""A logprob's rank computed without torch.compile in dqbench's vLLM servers on CPU: a vLLM general plugin (#31).

vLLM ranks each returned logprob with `batched_count_greater_than` (vllm/v1/sample/ops/logprobs.py), a
function under `torch.compile`, so that a GPU does not materialise a boolean copy of the logits. On a CPU that
compilation (dynamo, then Inductor's C++) runs in the model's worker at the first request that asks for any
logprobs, and every server is a new worker: measured on an idle 2-core AVX2 host with Inductor's on-disk cache
already warm, a fresh server's first prompt-logprobs request over a 257-token window took 3.6 s and the next
ones 0.9 s; without the compilation the first took 1.07 s and the next 0.93 s, every logprob and rank the same
(docs/results/2026-12-07-avx2-fresh-host.md, section 12). In a vLLM cell that first request is its evaluation's,
so every vLLM cell paid it inside its evaluate step (on a host whose Inductor cache is empty, with a C++ build).
Computed as written, `(x >= values).sum(-1)` gives the same integers; its boolean temporary is a quarter of the
logprobs tensor it reads, which vLLM holds anyway.

Registered as an entry point (`vllm.general_plugins`, pyproject.toml). It acts only where DQBENCH_EAGER_RANKS=1
(harness/serve/vllm.py sets it for CPU servers; a GPU server keeps vLLM's compiled kernel), when the sampler's
module is imported (in the model's worker): the sampler's name is pointed at the function torch.compile
wrapped (`_torchdynamo_orig_callable`). A vLLM whose sampler has no such compiled function is left as it is,
and the server's log says so.
"""

from __future__ import annotations

import importlib
import os
import sys

from harness.serve.on_import import when_imported

ENV = "DQBENCH_EAGER_RANKS"
SAMPLER_MODULE = "vllm.v1.sample.sampler"
NAME = "batched_count_greater_than"
_DONE = "_dq_eager_ranks"  # set on the sampler's module once its name points at the eager function


def register() -> None:
    """vLLM's plugin hook (see the module docstring)."""
    if os.environ.get(ENV) == "1":
        when_imported(SAMPLER_MODULE, lambda: _report(install()))


def _report(why: str | None) -> None:
    # vLLM's loggers are its own: a line on stderr reaches the server's log whatever their configuration
    if why is None:
        print("dqbench: logprob ranks computed without torch.compile (harness/serve/vllm_ranks.py)", file=sys.stderr)
    else:
        print(f"dqbench: logprob ranks as vLLM computes them: {why}", file=sys.stderr)


def install() -> str | None:
    """Point the sampler's name at the uncompiled function; the reason it was left alone, or None once done (or
    already)."""
    try:
        sampler = importlib.import_module(SAMPLER_MODULE)
    except ImportError as exc:
        return f"{SAMPLER_MODULE} cannot be imported ({exc})"
    if getattr(sampler, _DONE, False):
        return None
    compiled = getattr(sampler, NAME, None)
    eager = getattr(compiled, "_torchdynamo_orig_callable", None)
    if not callable(eager):
        return f"{SAMPLER_MODULE}.{NAME} is not there or not a torch.compile'd function"
    setattr(sampler, NAME, eager)
    setattr(sampler, _DONE, True)
    return None

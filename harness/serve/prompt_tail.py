"""Prompt logprobs for a prompt's last positions only: a vLLM general plugin (issue #31).

lm-eval scores a multiple-choice or LAMBADA item from the logprobs of its continuation, the last few tokens of
the prompt. vLLM's `prompt_logprobs` computes the LM head and a log-softmax over the whole vocabulary at *every*
prompt position (`GPUModelRunner._get_prompt_logprobs_dict`, the CPU runner's too) and never reads its prefix
cache for such a request (`SamplingParams.skip_reading_prefix_cache`). For SmolLM2-135M that head is a quarter
of a token's work, and the server answered the evaluation's own requests at 64 % of its prefill-only rate on
an AVX2 host (docs/results/2026-12-07-avx2-fresh-host.md, section 5).

A request may now say how many of its last prompt tokens it needs: `vllm_xargs: {"dq_prompt_logprobs_tail": N}`
(`dq-local-completions` sends the longest continuation of its batch). For such a request the model runner
computes the logits of those N positions only; the earlier positions keep their place in the answer with a
placeholder (`PLACEHOLDER_LOGPROB`, a positive logprob no real position can have, and rank 0), so the answer
has its usual shape and a client that read one by mistake can tell. A request without the argument, the load
test's and the shift analysis's, is computed as vLLM computes it.

The plugin is registered as an entry point (`vllm.general_plugins`, pyproject.toml): vLLM calls `register`
in each of its processes, and it acts only where DQBENCH_PROMPT_LOGPROBS_TAIL=1 (dqbench's vLLM servers,
harness/serve/vllm.py), when the model runner's module is imported: in the model's worker. It replaces the
method only when vLLM's is the one this copy was made from (`ORIGINAL_SHA256`, vLLM 0.32.0): any other vLLM
computes every position, as before, and says so in its log. The copy differs from vLLM's in the marked lines
only. The LM head over fewer rows may run another GEMM kernel than over all of them, so a tail's logprobs may
differ from the full computation's in their last bits (as a prompt's do with what shares its batch); on the
default matrix's 311 items they were bit-identical (docs/results/2026-12-07-avx2-fresh-host.md, section 7).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
import sys
from typing import Any

from harness.serve.on_import import when_imported

ENV = "DQBENCH_PROMPT_LOGPROBS_TAIL"
TAIL_ARG = "dq_prompt_logprobs_tail"
# a logprob is <= 0: a position the runner did not compute carries this (and rank 0), never a real value
PLACEHOLDER_LOGPROB = 1.0
# sha256 of inspect.getsource(GPUModelRunner._get_prompt_logprobs_dict) in vLLM 0.32.0, the copy's source
ORIGINAL_SHA256 = "889fdb068dfc37ddf4827e8f3af2d99ff790fbd3c77ff4a05eec1e3d0f1f560f"
RUNNER_MODULE = "vllm.v1.worker.gpu_model_runner"


def register() -> None:
    """vLLM's plugin hook: in a dqbench server's processes, install the tail-aware prompt logprobs into the model
    runner's class when its module is imported (at once if it is already): the API server and the engine core
    never import it, so they pay nothing; the model's worker does, and gets it."""
    if os.environ.get(ENV) != "1":
        return  # not a dqbench server (or DQBENCH_PROMPT_LOGPROBS=all)
    when_imported(RUNNER_MODULE, lambda: _report(install()))


def _report(why: str | None) -> None:
    # vLLM's loggers are its own: a line on stderr reaches the server's log whatever their configuration
    if why is None:
        print(
            f"dqbench: prompt logprobs at a request's {TAIL_ARG} only (harness/serve/prompt_tail.py)", file=sys.stderr
        )
    else:
        print(f"dqbench: prompt logprobs are computed at every position: {why}", file=sys.stderr)


def install() -> str | None:
    """Replace the runner's method; the reason it was left alone, or None once replaced (or already)."""
    try:
        runner = importlib.import_module(RUNNER_MODULE)
    except ImportError as exc:
        return f"{RUNNER_MODULE} cannot be imported ({exc})"
    cls = getattr(runner, "GPUModelRunner", None)
    method = getattr(cls, "_get_prompt_logprobs_dict", None)
    if cls is None or method is None:
        return f"{RUNNER_MODULE}.GPUModelRunner._get_prompt_logprobs_dict is not there"
    if method is _get_prompt_logprobs_dict:
        return None
    found = hashlib.sha256(inspect.getsource(method).encode()).hexdigest()
    if found != ORIGINAL_SHA256:
        return f"this vLLM's _get_prompt_logprobs_dict (sha256 {found[:12]}) is not the one the copy was made from"
    cls._get_prompt_logprobs_dict = _get_prompt_logprobs_dict
    return None


def rows_before_tail(extra_args: dict[str, Any] | None, num_prompt_tokens: int, start_idx: int, num_logits: int) -> int:
    """How many of this step's `num_logits` logit rows, the first of which predicts prompt token `start_idx + 1`,
    predict a token before the request's tail (0: no tail asked, or every row is in it)."""
    tail = (extra_args or {}).get(TAIL_ARG)
    if not isinstance(tail, int) or isinstance(tail, bool) or tail <= 0:
        return 0
    first_wanted = num_prompt_tokens - tail  # the first prompt token whose logprob is asked for
    return max(0, min(num_logits, first_wanted - (start_idx + 1)))


def _get_prompt_logprobs_dict(self: Any, hidden_states: Any, num_scheduled_tokens: dict[str, int]) -> dict:
    """vLLM 0.32.0's `GPUModelRunner._get_prompt_logprobs_dict`, with the rows before a request's tail skipped."""
    from vllm.utils.torch_utils import async_tensor_h2d
    from vllm.v1.outputs import LogprobsTensors

    num_prompt_logprobs_dict = self.num_prompt_logprobs
    if not num_prompt_logprobs_dict:
        return {}

    prompt_logprobs_dict: dict[str, Any] = {}
    completed_prefill_reqs = []
    for req_id, num_prompt_logprobs in num_prompt_logprobs_dict.items():
        num_tokens = num_scheduled_tokens.get(req_id)
        if num_tokens is None:
            continue  # preempted in its prefill
        request = self.requests[req_id]
        if request.prompt_token_ids is None:
            continue  # prompt embeddings: no prompt logprobs
        num_prompt_tokens = len(request.prompt_token_ids)
        prompt_token_ids = async_tensor_h2d(request.prompt_token_ids, device=self.device)
        logprobs_tensors = request.in_progress_prompt_logprobs_cpu
        if logprobs_tensors is None:
            logprobs_tensors = LogprobsTensors.empty_cpu(num_prompt_tokens - 1, num_prompt_logprobs + 1)
            request.in_progress_prompt_logprobs_cpu = logprobs_tensors

        start_idx = request.num_computed_tokens
        start_tok = start_idx + 1
        num_remaining_tokens = num_prompt_tokens - start_tok
        if num_tokens <= num_remaining_tokens:
            num_logits = num_tokens  # a chunk: more prompt tokens remain
        else:
            num_logits = num_remaining_tokens  # the last chunk
            completed_prefill_reqs.append(req_id)
            prompt_logprobs_dict[req_id] = logprobs_tensors
        if num_logits <= 0:
            continue

        req_idx = self.input_batch.req_id_to_index[req_id]
        offset = self.query_start_loc.np[req_idx].item()
        # dqbench: the rows before the request's tail get the placeholder and no logits
        params = request.sampling_params
        skip = rows_before_tail(getattr(params, "extra_args", None), num_prompt_tokens, start_idx, num_logits)
        if skip:
            before = slice(start_idx, start_idx + skip)
            own_tokens = prompt_token_ids[start_tok : start_tok + skip].unsqueeze(-1)
            logprobs_tensors.logprob_token_ids[before] = own_tokens.to(logprobs_tensors.logprob_token_ids.dtype)
            logprobs_tensors.logprobs[before] = PLACEHOLDER_LOGPROB
            logprobs_tensors.selected_token_ranks[before] = 0
            start_idx, start_tok, offset = start_idx + skip, start_tok + skip, offset + skip
            num_logits -= skip
            if num_logits == 0:
                continue
        # dqbench: end of the change
        prompt_hidden_states = hidden_states[offset : offset + num_logits]
        logits = self.model.compute_logits(prompt_hidden_states)
        tgt_token_ids = prompt_token_ids[start_tok : start_tok + num_logits]
        if self.model_config.logprobs_mode in ("raw_logits", "processed_logits"):
            scores = logits.to(torch_float32())
        else:
            scores = self.sampler.compute_logprobs(logits)
        token_ids, logprobs, ranks, *_ = self.sampler.gather_logprobs(scores, num_prompt_logprobs, tgt_token_ids)
        chunk_slice = slice(start_idx, start_idx + num_logits)
        logprobs_tensors.logprob_token_ids[chunk_slice].copy_(token_ids, non_blocking=True)
        logprobs_tensors.logprobs[chunk_slice].copy_(logprobs, non_blocking=True)
        logprobs_tensors.selected_token_ranks[chunk_slice].copy_(ranks, non_blocking=True)

    for req_id in completed_prefill_reqs:
        del num_prompt_logprobs_dict[req_id]
        self.requests[req_id].in_progress_prompt_logprobs_cpu = None
    if prompt_logprobs_dict:
        self._sync_device()
    return prompt_logprobs_dict


def torch_float32() -> Any:
    import torch

    return torch.float32

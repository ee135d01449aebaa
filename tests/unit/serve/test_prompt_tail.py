"""harness/serve/prompt_tail.py: the model runner's prompt logprobs with a request's tail, against vLLM's own
method on the same runner state (a fake runner: hidden states and an LM head of random numbers)."""

from types import SimpleNamespace

import numpy as np
import pytest

from harness.serve import prompt_tail
from harness.serve.prompt_tail import PLACEHOLDER_LOGPROB, TAIL_ARG, rows_before_tail

pytestmark = pytest.mark.slow  # imports vLLM's model runner (~10 s)


@pytest.mark.parametrize(
    "extra, prompt, start, rows, want",
    [
        (None, 10, 0, 9, 0),  # no tail asked: every row
        ({TAIL_ARG: 3}, 10, 0, 9, 6),  # tokens 7, 8, 9 wanted: rows predicting 1..6 skipped
        ({TAIL_ARG: 3}, 10, 5, 4, 1),  # a later chunk: rows predicting 6..9, one before the tail
        ({TAIL_ARG: 3}, 10, 0, 4, 4),  # an early chunk wholly before the tail
        ({TAIL_ARG: 3}, 10, 7, 2, 0),  # a chunk inside the tail
        ({TAIL_ARG: 20}, 10, 0, 9, 0),  # a tail longer than the prompt: every row
        ({TAIL_ARG: 0}, 10, 0, 9, 0),  # nonsense is ignored, never trusted
        ({TAIL_ARG: "3"}, 10, 0, 9, 0),
        ({TAIL_ARG: True}, 10, 0, 9, 0),
    ],
)
def test_rows_before_the_tail(extra, prompt, start, rows, want):
    assert rows_before_tail(extra, prompt, start, rows) == want


def _runner(prompts, extra, vocab=64, hidden=16, seed=0):
    """A runner before its first step: request r's prompt `prompts[r]`, hidden state rows H[r][position]."""
    import torch

    g = torch.Generator().manual_seed(seed)
    w = torch.randn(hidden, vocab, generator=g)
    states = {f"r{i}": torch.randn(len(p), hidden, generator=g) for i, p in enumerate(prompts)}
    requests = {
        f"r{i}": SimpleNamespace(
            prompt_token_ids=p,
            in_progress_prompt_logprobs_cpu=None,
            num_computed_tokens=0,
            sampling_params=SimpleNamespace(extra_args=extra[i]),
        )
        for i, p in enumerate(prompts)
    }
    return SimpleNamespace(
        num_prompt_logprobs=dict.fromkeys(requests, 1),
        requests=requests,
        device="cpu",
        input_batch=SimpleNamespace(req_id_to_index={r: i for i, r in enumerate(requests)}),
        model=SimpleNamespace(compute_logits=lambda h: h @ w),
        model_config=SimpleNamespace(logprobs_mode="raw_logprobs"),
        sampler=__import__("vllm.v1.sample.sampler", fromlist=["Sampler"]).Sampler,
        _sync_device=lambda: None,
        states=states,
    )


def _steps(runner, fn, chunks):
    """Run the method over the prefill in steps of `chunks[r]` tokens per request; each request's tensors."""
    import torch

    done = {}
    while runner.num_prompt_logprobs:
        sched, rows, starts = {}, [], []
        for r in list(runner.num_prompt_logprobs):
            req = runner.requests[r]
            n = min(chunks[r], len(req.prompt_token_ids) - req.num_computed_tokens)
            sched[r] = n
            starts.append(sum(len(x) for x in rows))
            rows.append(runner.states[r][req.num_computed_tokens : req.num_computed_tokens + n])
        runner.query_start_loc = SimpleNamespace(np=np.array(starts + [sum(len(x) for x in rows)]))
        runner.input_batch.req_id_to_index = {r: i for i, r in enumerate(sched)}
        done.update(fn(runner, torch.cat(rows), sched))
        for r, n in sched.items():
            runner.requests[r].num_computed_tokens += n
    return done


def test_without_a_tail_the_copy_computes_what_vllm_computes_and_with_one_the_tail_alike():
    torch = pytest.importorskip("torch")
    from vllm.v1.worker.gpu_model_runner import GPUModelRunner

    prompts = [list(range(1, 12)), list(range(20, 27)), list(range(30, 45))]
    chunks = {"r0": 4, "r1": 100, "r2": 6}  # chunked prefill for r0 and r2
    vllm_own = _steps(_runner(prompts, [None] * 3), GPUModelRunner._get_prompt_logprobs_dict, chunks)
    copy_none = _steps(_runner(prompts, [None] * 3), prompt_tail._get_prompt_logprobs_dict, chunks)
    tails = [{TAIL_ARG: 3}, None, {TAIL_ARG: 5}]
    copy_tail = _steps(_runner(prompts, tails), prompt_tail._get_prompt_logprobs_dict, chunks)
    assert set(vllm_own) == set(copy_none) == set(copy_tail) == {"r0", "r1", "r2"}
    for r in vllm_own:
        for name in ("logprob_token_ids", "logprobs", "selected_token_ranks"):
            assert torch.equal(getattr(vllm_own[r], name), getattr(copy_none[r], name)), (r, name)
    for i, tail in enumerate(tails):
        r = f"r{i}"
        keep = max(0, len(prompts[i]) - 1 - tail[TAIL_ARG]) if tail else 0  # rows before the tail
        got, want = copy_tail[r], vllm_own[r]
        # the LM head over fewer rows may take another GEMM kernel: the same numbers up to the last bits (the
        # real server's answers were bit-identical on the default's 311 items, docs/results)
        torch.testing.assert_close(got.logprobs[keep:], want.logprobs[keep:], rtol=1e-5, atol=1e-5)
        assert torch.equal(got.logprob_token_ids[keep:], want.logprob_token_ids[keep:])
        assert torch.equal(got.selected_token_ranks[keep:], want.selected_token_ranks[keep:])
        assert bool((got.logprobs[:keep] == PLACEHOLDER_LOGPROB).all()) and bool((want.logprobs <= 0).all())
        assert bool((got.selected_token_ranks[:keep] == 0).all())
        assert got.logprob_token_ids[:keep, 0].tolist() == prompts[i][1 : 1 + keep]  # each position's own token


def test_it_is_installed_only_over_the_method_it_was_copied_from(monkeypatch):
    pytest.importorskip("vllm")
    from vllm.v1.worker.gpu_model_runner import GPUModelRunner

    original = GPUModelRunner._get_prompt_logprobs_dict
    try:
        monkeypatch.setattr(prompt_tail, "ORIGINAL_SHA256", "0" * 64)
        why = prompt_tail.install()
        assert why is not None and "not the one the copy was made from" in why
        assert GPUModelRunner._get_prompt_logprobs_dict is original
        monkeypatch.undo()
        assert prompt_tail.install() is None and prompt_tail.install() is None  # installed, then already
        assert GPUModelRunner._get_prompt_logprobs_dict is prompt_tail._get_prompt_logprobs_dict
    finally:
        GPUModelRunner._get_prompt_logprobs_dict = original


def test_the_hook_acts_only_in_a_dqbench_server_and_when_the_runner_s_module_loads(monkeypatch, tmp_path):
    import importlib
    import sys

    calls = []
    monkeypatch.setattr(prompt_tail, "install", lambda: calls.append(1))
    monkeypatch.setattr(prompt_tail, "RUNNER_MODULE", "dq_fake_runner")
    finders = list(sys.meta_path)
    monkeypatch.delenv(prompt_tail.ENV, raising=False)
    prompt_tail.register()
    monkeypatch.setenv(prompt_tail.ENV, "0")
    prompt_tail.register()
    assert calls == [] and sys.meta_path == finders  # not a dqbench server: nothing happens
    monkeypatch.setenv(prompt_tail.ENV, "1")
    (tmp_path / "dq_fake_runner.py").write_text("LOADED = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        prompt_tail.register()
        prompt_tail.register()  # vLLM may call it again: one finder
        assert len(sys.meta_path) == len(finders) + 1 and calls == []  # nothing imported the runner yet
        assert importlib.import_module("dq_fake_runner").LOADED and calls == [1]  # installed as it loaded
        assert sys.meta_path == finders
        prompt_tail.register()  # its module already loaded: at once
        assert calls == [1, 1] and sys.meta_path == finders
    finally:
        sys.meta_path[:] = finders
        sys.modules.pop("dq_fake_runner", None)

"""harness/serve/vllm_ranks.py: a CPU server's sampler ranks logprobs with the function torch.compile wrapped,
only in a dqbench server, only once its module loads, and a vLLM without that function is left alone."""

from __future__ import annotations

import importlib
import sys
import types

import pytest

from harness.serve import vllm_ranks


def compiled(fn):
    """What torch.compile returns for a function, as far as the plugin reads it."""

    def wrapper(*a, **kw):
        raise AssertionError("the compiled function was called")

    wrapper._torchdynamo_orig_callable = fn
    return wrapper


def count(x, values):
    return sum(v >= values for v in x)


@pytest.fixture
def sampler(monkeypatch):
    """A stand-in for vLLM's sampler module, under the plugin's name for it."""
    mod = types.ModuleType("dq_fake_sampler")
    mod.batched_count_greater_than = compiled(count)
    monkeypatch.setitem(sys.modules, "dq_fake_sampler", mod)
    monkeypatch.setattr(vllm_ranks, "SAMPLER_MODULE", "dq_fake_sampler")
    return mod


def test_the_sampler_gets_the_uncompiled_function_once(sampler):
    assert vllm_ranks.install() is None
    assert sampler.batched_count_greater_than is count
    assert sampler.batched_count_greater_than([1, 2, 3], 2) == 2
    assert vllm_ranks.install() is None and sampler.batched_count_greater_than is count  # already


def test_a_sampler_without_a_compiled_function_is_left_alone(sampler):
    sampler.batched_count_greater_than = count  # another vLLM: not compiled
    why = vllm_ranks.install()
    assert why is not None and "not a torch.compile'd function" in why
    del sampler.batched_count_greater_than
    assert "not there" in (vllm_ranks.install() or "")
    assert not hasattr(sampler, "_dq_eager_ranks")


def test_the_hook_acts_only_in_a_dqbench_cpu_server_and_when_the_sampler_loads(monkeypatch, capsys):
    waiting = []
    monkeypatch.setattr(vllm_ranks, "when_imported", lambda name, after: waiting.append((name, after)))
    monkeypatch.setattr(vllm_ranks, "install", lambda: None)
    monkeypatch.delenv(vllm_ranks.ENV, raising=False)
    vllm_ranks.register()
    monkeypatch.setenv(vllm_ranks.ENV, "0")
    vllm_ranks.register()
    assert waiting == []  # not a dqbench CPU server: nothing happens
    monkeypatch.setenv(vllm_ranks.ENV, "1")
    vllm_ranks.register()
    assert [name for name, _ in waiting] == [vllm_ranks.SAMPLER_MODULE]
    waiting[0][1]()  # what runs once the sampler's module has loaded (harness/serve/on_import.py)
    assert "without torch.compile" in capsys.readouterr().err


def test_only_a_cpu_server_asks_for_it():
    from harness.serve.vllm import VLLMServer
    from harness.spec.serving import VLLMServing

    assert VLLMServer(VLLMServing(), "python", "cpu").env()[vllm_ranks.ENV] == "1"
    assert VLLMServer(VLLMServing(), "python", "cuda").env()[vllm_ranks.ENV] == "0"


@pytest.mark.slow
def test_vllm_s_own_sampler_ranks_alike_without_the_compilation():
    """vLLM 0.32's sampler: its name is a torch.compile'd function, and the function it wraps gives the same
    ranks, ties included (imports vLLM's sampler, ~10 s)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("vllm")
    real = importlib.import_module(vllm_ranks.SAMPLER_MODULE)
    original = real.batched_count_greater_than
    try:
        assert vllm_ranks.install() is None
        eager = real.batched_count_greater_than
        assert eager is original._torchdynamo_orig_callable
        x = torch.log_softmax(torch.randn(7, 300), -1)
        x[:, 5] = x[:, 9]  # a tie
        values = x.gather(-1, torch.tensor([[5], [9], [0], [1], [2], [3], [299]]))
        assert torch.equal(eager(x, values), (x >= values).sum(-1))
        assert eager(x, values)[:2].tolist() == [int((x[0] >= x[0, 5]).sum()), int((x[1] >= x[1, 9]).sum())]
    finally:
        real.batched_count_greater_than = original
        if hasattr(real, "_dq_eager_ranks"):
            del real._dq_eager_ranks

"""harness/serve/vllm_start.py: the engine launcher's start method replaced, nothing else; vLLM's server module
run with the given arguments; a vLLM without that name started unchanged, and said so."""

from __future__ import annotations

import multiprocessing
import sys
import types

import pytest

from harness.serve import vllm_start


@pytest.fixture
def launcher(monkeypatch):
    """A stand-in for vllm.v1.engine.utils: the real module imports vLLM (seconds, and absent from a bare env)."""
    mod = types.ModuleType(vllm_start.PATCHED)
    spawn = multiprocessing.get_context("spawn")
    mod.get_mp_context = lambda: spawn
    monkeypatch.setitem(sys.modules, vllm_start.PATCHED, mod)
    return mod


def test_the_launcher_forks_and_the_rest_of_vllm_keeps_its_method(launcher) -> None:
    shared = launcher.get_mp_context
    elsewhere = types.SimpleNamespace(get_mp_context=shared)  # a module that imported the name itself
    assert vllm_start.fork_engine_core()
    assert launcher.get_mp_context().get_start_method() == "fork"
    assert elsewhere.get_mp_context().get_start_method() == "spawn"  # the model's worker: still spawned


def test_main_runs_vllms_server_module_with_the_arguments(launcher, monkeypatch, capsys) -> None:
    ran = []
    monkeypatch.setattr(vllm_start.runpy, "run_module", lambda name, **kw: ran.append((name, list(sys.argv), kw)))
    monkeypatch.setattr(sys, "argv", ["x"])
    vllm_start.main(["--model", "/m", "--port", "8123"])
    assert ran == [
        (
            vllm_start.SERVER_MODULE,
            [vllm_start.SERVER_MODULE, "--model", "/m", "--port", "8123"],
            {"run_name": "__main__", "alter_sys": True},
        )
    ]
    assert capsys.readouterr().err == ""


def test_a_vllm_without_the_launcher_name_starts_unchanged_and_says_so(monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, vllm_start.PATCHED, types.ModuleType(vllm_start.PATCHED))
    assert not vllm_start.fork_engine_core()
    monkeypatch.setitem(sys.modules, vllm_start.PATCHED, None)  # import fails: no such module
    assert not vllm_start.fork_engine_core()
    ran = []
    monkeypatch.setattr(vllm_start.runpy, "run_module", lambda name, **kw: ran.append(name))
    monkeypatch.setattr(sys, "argv", ["x"])
    vllm_start.main([])
    assert ran == [vllm_start.SERVER_MODULE]
    assert "the engine core is spawned" in capsys.readouterr().err

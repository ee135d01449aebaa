"""Host figures: the GPU table (every row sourced, NVML names matched), HostFigures' fallbacks, the presets'
figures, the cache beside the probe, and the figures worker for real (a short run)."""

import json

import pytest

from harness.hw import probe
from harness.hw.figures import HostFigures, gpu_figures
from harness.hw.gpus import KNOWN_GPUS, known_gpu

NVML_NAMES = {
    "NVIDIA H100 80GB HBM3": "H100 SXM 80GB",
    "NVIDIA H100 PCIe": "H100 PCIe 80GB",
    "NVIDIA H200": "H200 SXM 141GB",
    "NVIDIA A100-SXM4-40GB": "A100 40GB",
    "NVIDIA A100-SXM4-80GB": "A100 80GB SXM",
    "NVIDIA A100 80GB PCIe": "A100 80GB PCIe",
    "NVIDIA L40S": "L40S",
    "NVIDIA L4": "L4",
    "NVIDIA A10G": "A10G",
    "NVIDIA GeForce RTX 4090": "RTX 4090",
    "NVIDIA GeForce RTX 5090": "RTX 5090",
}


@pytest.mark.parametrize("nvml,row", NVML_NAMES.items())
def test_nvml_names_find_their_row(nvml, row):
    assert known_gpu(nvml).name == row


def test_every_gpu_row_has_a_vendor_source_and_dense_figures():
    for g in KNOWN_GPUS:
        assert g.source.startswith("https://") and "nvidia" in g.source
        assert g.bandwidth_gb_s > 100 and g.tflops["bf16"] > g.tflops["fp32"] > 0
    assert known_gpu("T4") is None and gpu_figures("Tesla T4") is None
    h100 = gpu_figures("h100")
    assert h100.source == "datasheet" and h100.tflops["fp8"] == pytest.approx(2 * h100.tflops["bf16"], rel=0.01)


def test_peak_flops_falls_back_to_a_dtype_the_device_has():
    f = HostFigures(device="cpu", bandwidth_gb_s=10, tflops={"fp32": 0.1, "bf16": 0.4})
    assert f.peak_flops("bf16") == (0.4e12, "bf16")
    assert f.peak_flops("fp8") == (0.4e12, "bf16")  # no FP8 units: bf16's figure
    assert f.peak_flops("int8") == (0.4e12, "bf16")
    avx2 = HostFigures(device="cpu", bandwidth_gb_s=10, tflops={"fp32": 0.12, "bf16": 0.02})  # bf16 emulated
    assert avx2.peak_flops("int8") == (0.12e12, "fp32")  # the faster float rate, not the emulated one
    assert f.ridge["bf16"] == pytest.approx(40.0)  # FLOPs per byte
    with pytest.raises(ValueError, match="no matmul throughput"):
        HostFigures(device="cpu", bandwidth_gb_s=1).peak_flops("bf16")


@pytest.mark.parametrize("preset", ["cpu-avx2", "cpu-avx512", "cuda-h100", "cuda-a100"])
def test_every_preset_carries_figures_that_do_not_move_its_host_id(preset):
    caps = probe.load_override(preset)
    assert caps.figures is not None and caps.figures.basis
    assert caps.roofline_figures() is caps.figures
    assert caps.host_id == caps.model_copy(update={"figures": None}).host_id


def test_a_gpu_host_without_measured_figures_uses_its_datasheet():
    caps = probe.load_override("cuda-h100").model_copy(update={"figures": None})
    assert caps.roofline_figures().source == "datasheet"


def test_figures_are_cached_beside_the_probe_and_merged_into_it(tmp_path, monkeypatch, settings):
    import dataclasses

    settings = dataclasses.replace(settings, home=tmp_path)
    monkeypatch.delenv(probe.OVERRIDE_ENV, raising=False)
    caps = probe.load_override("cpu-avx512").model_copy(update={"figures": None, "source": "probe"})
    monkeypatch.setattr(probe, "_probe_key", lambda *a: "k1")
    monkeypatch.setattr(probe, "probe_engines", lambda s, timeout=300: {"vllm": caps.vllm.model_dump()})
    monkeypatch.setattr(probe, "cpu_info", lambda: caps.cpu)
    monkeypatch.setattr(probe, "gpu_info", list)
    probe._MEMO.clear()
    assert probe.host_caps(settings).figures is None
    assert probe.host_figures(settings, measure=False) is None  # nothing cached and not asked to measure
    measured = HostFigures(device="cpu", bandwidth_gb_s=12.0, tflops={"bf16": 0.3}, basis="test")
    calls = []
    monkeypatch.setattr(probe, "measure_figures", lambda s, device: calls.append(device) or measured)
    assert probe.host_figures(settings) == measured and calls == ["cpu"]
    assert (tmp_path / "probe" / f"figures-v{probe.FIGURES_VERSION}-k1.json").is_file()
    assert "figures" not in json.loads((tmp_path / "probe" / "k1.json").read_text())  # other checkouts read it
    assert probe.host_caps(settings).figures == measured  # merged on the next read
    assert probe.host_figures(settings) == measured and calls == ["cpu"]  # cached: not measured again
    probe._MEMO.clear()


@pytest.mark.slow
def test_the_figures_worker_measures_this_host(tmp_path, settings):
    """The real worker in the serving env (torch): small arrays, a few repeats."""
    from harness.hw.figures_worker import FiguresJob
    from harness.proc import run_worker

    job = FiguresJob(array_mib=16, repeats=2, matmul_repeats=2, target_s=0.005, min_n=256, max_n=512)
    rec = run_worker(job, tmp_path / "figures.log", settings, stage="doctor")
    assert rec.device == "cpu" and rec.bandwidth_gb_s > 0.1 and rec.bandwidth_1core_gb_s > 0.1
    assert rec.tflops["fp32"] > 0 and rec.tflops["bf16"] > 0 and set(rec.kernels) == set(rec.tflops)
    assert rec.threads >= 1 and rec.torch
    # int8 as vLLM-CPU's W8A8 computes it, not torch's fallback (50-100x slower without VNNI: a roofline
    # 1/60 of the engine's on an AVX2 host)
    assert rec.kernels["int8"].startswith("vLLM-CPU W8A8") and rec.tflops["int8"] > 0.2 * rec.tflops["fp32"]


def test_nvml_peak_bandwidth_is_clock_times_bus_width(monkeypatch):
    import sys
    import types

    fake = types.SimpleNamespace(
        NVML_CLOCK_MEM=1,
        nvmlInit=lambda: None,
        nvmlShutdown=lambda: None,
        nvmlDeviceGetHandleByIndex=lambda i: "h",
        nvmlDeviceGetMaxClockInfo=lambda h, kind: 2619,
        nvmlDeviceGetMemoryBusWidth=lambda h: 5120,
    )
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    assert probe.nvml_bandwidth_gb_s() == pytest.approx(3352.3, abs=0.1)  # an H100 SXM's HBM3
    monkeypatch.setitem(sys.modules, "pynvml", None)
    assert probe.nvml_bandwidth_gb_s() is None

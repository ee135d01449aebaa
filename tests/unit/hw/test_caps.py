"""HostCaps: ISA classes, a host id that hashes what changes figures and nothing else, the reference dtype."""

import pytest

from harness.hw.caps import CpuInfo, DtypeSpeed, GpuInfo, HostCaps
from harness.hw.probe import load_override


def cpu(flags, arch="x86_64", model="AMD EPYC"):
    return CpuInfo(model=model, arch=arch, cores=2, memory_gib=23.4, flags=flags)


@pytest.mark.parametrize(
    "flags,arch,cls",
    [
        (["avx", "avx2", "fma"], "x86_64", "avx2"),
        (["avx2", "avx512f", "avx512bw"], "x86_64", "avx512"),
        (["avx2", "avx512f", "avx512_bf16"], "x86_64", "avx512_bf16"),
        (["avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"], "x86_64", "amx"),
        (["avx"], "x86_64", "baseline"),
        (["asimd"], "aarch64", "arm64"),
    ],
)
def test_isa_class(flags, arch, cls):
    assert cpu(flags, arch).isa_class == cls


def test_host_id_is_stable_and_ignores_probe_time_and_source():
    a = HostCaps(cpu=cpu(["avx2"]), probed_at="2026-01-01T00:00:00+00:00")
    b = HostCaps(cpu=cpu(["avx2"]), probed_at="2026-11-23T00:00:00+00:00", source="override:x")
    assert a.host_id == b.host_id and len(a.host_id) == 10


def test_host_id_changes_with_what_changes_figures():
    base = HostCaps(cpu=cpu(["avx2"]))
    assert HostCaps(cpu=cpu(["avx2", "avx512f"])).host_id != base.host_id  # ISA class
    assert HostCaps(cpu=cpu(["avx2"], model="Intel Xeon")).host_id != base.host_id
    assert HostCaps(cpu=cpu(["avx2"]), gpus=[GpuInfo(name="H100", compute_capability="9.0")]).host_id != base.host_id
    two = load_override("cpu-avx2")
    newer = two.model_copy(update={"vllm": two.vllm.model_copy(update={"version": "0.33.0"})})
    assert newer.host_id != two.host_id  # engine build


def test_presets_are_distinct_hosts_with_labels():
    ids = {n: load_override(n) for n in ("cpu-avx2", "cpu-avx512", "cuda-h100", "cuda-a100")}
    assert len({c.host_id for c in ids.values()}) == 4
    assert "avx2" in ids["cpu-avx2"].label and "H100" in ids["cuda-h100"].label
    block = ids["cpu-avx2"].host_block()
    assert block["source"] == "override:cpu-avx2" and block["reference_dtype"] == "fp32"
    assert block["fingerprint"]["isa"] == "avx2" and block["host_id"] == ids["cpu-avx2"].host_id


def test_reference_dtype_by_host():
    slow_bf16 = DtypeSpeed(ms={"fp32": 40.0, "bf16": 180.0}, fastest="fp32", basis="test")
    h = HostCaps(cpu=cpu(["avx2"]), dtype_speed=slow_bf16)
    assert h.reference_dtype("cpu") == "fp32" and "fp32 40.0 ms" in h.dtype_note("cpu")
    assert HostCaps(cpu=cpu(["avx2"])).reference_dtype("cpu") == "bf16"  # nothing measured: the default
    assert (
        HostCaps(cpu=cpu([]), gpus=[GpuInfo(name="V100", compute_capability="7.0")]).reference_dtype("cuda") == "fp16"
    )
    assert load_override("cuda-h100").reference_dtype("cuda") == "bf16"

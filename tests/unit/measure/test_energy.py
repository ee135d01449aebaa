"""Energy per load level (harness/measure/energy.py) against a fake powercap tree and a fake NVML: the counter
is read as the kernel and the driver write it (wraps included), a level's joules per token and tokens per joule
follow from two readings, and a host without a readable counter says "not measurable on this host"."""

import os
import sys
import types

import pytest

from harness.measure.energy import EnergyProbe, NvmlCounter, open_counter, rapl_counter
from harness.result import Level


def zone(root, name, index, energy_uj, max_uj=1_000_000_000):
    z = root / f"intel-rapl:{index}"
    z.mkdir(parents=True)
    (z / "name").write_text(name + "\n")
    (z / "energy_uj").write_text(f"{energy_uj}\n")
    (z / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return z


def test_rapl_sums_package_zones_and_counts_a_wrap(tmp_path):
    p0 = zone(tmp_path, "package-0", 0, 999_000_000)
    p1 = zone(tmp_path, "package-1", 1, 5_000_000)
    zone(tmp_path, "psys", 2, 7)  # not a package: left out
    (p0 / "intel-rapl:0:0").mkdir()  # a subzone (core, dram) is inside its package's count
    counter, why = rapl_counter(tmp_path)
    assert why == "" and counter.name == "rapl:package-0+package-1"
    assert counter.read_j() == 0.0
    (p0 / "energy_uj").write_text("2000000\n")  # wrapped at 1e9 uJ: 1e6 + 2e6 uJ = 3 J
    (p1 / "energy_uj").write_text("6000000\n")  # +1 J
    assert counter.read_j() == pytest.approx(4.0)


def test_no_rapl_is_not_measurable_with_the_reason(tmp_path):
    counter, meter = open_counter("cpu", tmp_path / "nothing")
    assert counter is None and meter.counter is None
    assert meter.note.startswith("not measurable on this host: no RAPL") and "does not exist" in meter.note
    counter, meter = open_counter("cpu", tmp_path)  # the folder, no package zone
    assert counter is None and "no RAPL package zone" in meter.note


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file: permission cannot be denied")
def test_an_unreadable_rapl_zone_says_so(tmp_path):
    z = zone(tmp_path, "package-0", 0, 1)
    (z / "energy_uj").chmod(0)
    counter, why = rapl_counter(tmp_path)
    assert counter is None and "not readable by this user" in why


def test_this_host_says_whether_it_is_measurable():
    counter, meter = open_counter("cpu")
    if counter is None:
        assert meter.note.startswith("not measurable on this host: ")
    else:
        counter.close()
        assert meter.counter.startswith("rapl:")


class FakeNvml(types.ModuleType):
    """pynvml as the harness calls it: two GPUs whose energy counters (mJ) a test advances."""

    def __init__(self):
        super().__init__("pynvml")
        self.mj = [1_000_000, 5_000_000]
        self.shut = False

    def nvmlInit(self):
        pass

    def nvmlShutdown(self):
        self.shut = True

    def nvmlDeviceGetCount(self):
        return 2

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        return self.mj[h]

    def nvmlDeviceGetUUID(self, h):
        return f"GPU-{h}"


def test_nvml_counts_the_visible_gpus(monkeypatch):
    fake = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    counter, meter = open_counter("cuda")
    assert isinstance(counter, NvmlCounter) and meter.counter == "nvml:GPU1" and "whole GPU" in meter.scope
    fake.mj[0] += 9_000  # an invisible GPU does not count
    fake.mj[1] += 2_500
    assert counter.read_j() == pytest.approx(2.5)
    counter.close()
    assert fake.shut


def test_nvml_without_the_package_is_not_measurable(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    counter, meter = open_counter("cuda")
    assert (
        counter is None
        and meter.note == "not measurable on this host: no NVML (nvidia-ml-py is not installed: not a CUDA host)"
    )


class StepCounter:
    name, scope = "fake", "a test"

    def __init__(self, values):
        self.values = list(values)

    def read_j(self):
        return self.values.pop(0) if len(self.values) > 1 else self.values[0]

    def close(self):
        pass


def test_a_levels_energy_is_the_difference_of_two_readings():
    probe = EnergyProbe(StepCounter([10.0, 70.0]), every=3600)
    probe.begin()
    lv = Level(profile="concurrency", level=4, requests=8, completed=8, failed=0, duration_s=2.0, output_tok_s=60.0)
    got = probe.end(lv)["energy"]
    assert got.joules == pytest.approx(60.0) and got.output_tokens == 120 and got.requests == 8
    assert got.joules_per_token == pytest.approx(0.5) and got.tokens_per_joule == pytest.approx(2.0)
    assert got.joules_per_request == pytest.approx(7.5) and got.watts > 0
    stored = lv.model_copy(update={"energy": got}).model_dump(mode="json")
    assert stored["energy"]["counter"] == "fake"
    assert "energy" not in lv.model_dump(mode="json")  # a level without a reading is written as before

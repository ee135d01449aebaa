"""Methods that cannot run on this CPU host are infeasible in the plan with what they need -- never
skipped silently, never faked. On a GPU host (marker `gpu`) the legacy plugins run for real."""

import pytest

from harness.plan import plan_matrix
from harness.spec import parse_matrix
from harness.workspace import CellPaths

# the host classes these plans are made for (harness/hw/presets): W4A16 runs on the AVX-512 one
PRESET = {"cpu": "cpu-avx512", "cuda": "cuda-h100"}


def plan_one(base_matrix, settings, kind: str, precision: str = "int4", host: str = "cpu", **method):
    base_matrix["axes"] = {"precision": ["bf16", precision], "method": ["none", "m"], "distill": ["none"]}
    base_matrix["methods"] = {"m": {"kind": kind, **method}}
    base_matrix["hardware"]["device"] = host
    return plan_matrix(parse_matrix(base_matrix), settings, host=PRESET[host]).cells[1]


@pytest.mark.parametrize("kind,package", [("autoawq", "autoawq"), ("autogptq", "auto-gptq")])
def test_legacy_plugins_say_what_they_need_on_cpu(base_matrix, settings, kind, package):
    cell = plan_one(base_matrix, settings, kind, group_size=64)
    assert cell.status == "infeasible"
    assert "needs a CUDA GPU to compress" in cell.reason
    assert "CUDA-only" in cell.reason and "llm-compressor `awq`/`gptq`" in cell.reason
    if not __import__("importlib").util.find_spec(package.replace("-", "_").replace("autoawq", "awq")):
        assert f"{package} installed (pip install 'dqbench[legacy]')" in cell.reason


def test_bnb_says_what_it_needs(base_matrix, settings):
    cell = plan_one(base_matrix, settings, "bnb")
    assert cell.status == "infeasible" and "bitsandbytes" in cell.reason and "CUDA" in cell.reason


def test_legacy_group_size_is_checked(base_matrix, settings):
    cell = plan_one(base_matrix, settings, "autoawq", group_size=128, host="cuda")
    assert "group_size 128 does not divide the input size 576" in cell.reason


@pytest.mark.gpu
@pytest.mark.slow
def test_autoawq_quantizes_on_a_gpu_host(base_matrix, settings, tmp_path):
    pytest.importorskip("awq")
    from harness.registry import compressors

    cell = plan_one(
        base_matrix, settings, "autoawq", group_size=64, host="cuda", calibration_samples=8, calibration_seq_len=128
    )
    src = settings.models_dir / "smollm2-135m-instruct"
    art = compressors.get("autoawq")().compress(cell, src, CellPaths.in_folder(tmp_path, cell.cell_id), settings)
    assert art.quantization == "awq" and art.size_bytes > 0 and art.record["peak_vram_gib"] > 0

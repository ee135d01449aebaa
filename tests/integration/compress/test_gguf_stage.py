"""The GGUF plugin on a tiny randomly initialised Llama made here: llama.cpp's converter and quantizer run
for real (the set-up builds them); the record carries the effective bits per weight and the per-tensor
fallbacks (hidden size 64 is not a multiple of 256, so k-quants fall back, as with SmolLM2's 576)."""

import pytest

from harness.registry import compressors
from harness.settings import load_settings
from harness.workspace import CellPaths
from tests.integration.compress.test_llmc_stage import cell_for, tiny_llama  # noqa: F401 - fixture

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _needs_llamacpp():
    if load_settings().llamacpp_dir is None:
        pytest.skip("llama.cpp not built (./dq setup builds it; ./dq test sets DQBENCH_LLAMACPP)")


@pytest.mark.parametrize(
    "precision,options,qtype,bpw",
    [
        ("int8", {}, "Q8_0", (8.4, 9.5)),
        ("int4", {"imatrix": True}, "Q4_K_M", (4.4, 8.6)),
    ],
)
def test_gguf_quantizes_and_records_effective_bits(
    tiny_llama,
    base_matrix,
    tmp_path,
    precision,
    options,
    qtype,
    bpw,
):
    settings = load_settings()
    method = {"kind": "gguf", "options": options, "calibration_samples": 4, "calibration_seq_len": 64}
    cell = cell_for(base_matrix, settings, tiny_llama, precision, method)
    assert cell.serving.kind == "llamacpp"
    art = compressors.get("gguf")().compress(cell, tiny_llama, CellPaths.in_folder(tmp_path, cell.cell_id), settings)
    assert art.model.endswith(f"{qtype}.gguf") and art.quantization == qtype and art.tokenizer == str(tiny_llama)
    rec = art.record
    assert rec["tool"] == "llama.cpp" and rec["type"] == qtype and rec["n_tensors"] > 10
    assert bpw[0] < rec["bits_per_weight_linear"] < bpw[1], rec
    assert art.size_bytes > 0 and rec["peak_rss_gib"] > 0 and rec["timings"]["quantize_s"] > 0
    if qtype == "Q4_K_M":
        assert rec["fallbacks"] and "fell back" in rec["fallback_note"]  # 64 is not a multiple of 256
        assert rec["calibration"]["used_for"] == "imatrix" and "--imatrix" in rec["recipe"][-1]
    else:
        assert rec["tensor_types"]["Q8_0"] >= 14 and not rec["fallbacks"]


def test_gguf_plan_errors_name_the_field(base_matrix, settings):
    from harness.plan import plan_matrix
    from harness.spec import parse_matrix

    base_matrix["axes"] = {"precision": ["bf16", "int4"], "method": ["none", "g"], "distill": ["none"]}
    base_matrix["methods"] = {"g": {"kind": "gguf", "group_size": 64, "options": {"type": "Q8_0"}}}
    cell = plan_matrix(parse_matrix(base_matrix), settings, host="cpu-avx512").cells[1]
    assert "options.type Q8_0 is a 8-bit type but the cell is int4" in cell.reason
    assert "GGUF types fix their own block size" in cell.reason

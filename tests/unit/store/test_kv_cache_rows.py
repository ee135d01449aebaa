"""The KV-cache axis in the index and the advisor's words (issue #27): a KV cell's row names its entry and sizes
its KV bytes per token in that dtype; a plan stored before the axis reads as `auto`."""

import copy

from advisor.explain import cell_label
from harness.plan import plan_matrix
from harness.spec import parse_matrix
from harness.store.rows import cell_row

HOST = {"host_id": "h1", "label": "test host"}


def test_a_kv_cells_row_names_its_entry_and_its_kv_bytes(base_matrix, settings):
    m = copy.deepcopy(base_matrix)
    m["axes"]["kv_cache"] = ["auto", "fp8"]
    plan = plan_matrix(parse_matrix(m), settings, host="cpu-avx512")
    ref, fp8 = (next(c for c in plan.cells if c.method == "none" and c.kv_cache == kv) for kv in ("auto", "fp8"))
    ref_row = cell_row(ref.model_dump(mode="json"), None, HOST)
    fp8_row = cell_row(fp8.model_dump(mode="json"), None, HOST)
    assert ref_row["kv_cache"] == "auto" and fp8_row["kv_cache"] == "fp8"
    assert fp8_row["kv_bytes_per_token"] == ref_row["kv_bytes_per_token"] / 2  # bf16 -> fp8
    assert fp8_row["parent_id"] == ref.cell_id
    assert "kv_cache" not in ref.model_dump(mode="json")  # a stored plan before the axis reads the same


def test_the_advisor_names_a_kv_entry_beside_the_method():
    r = {"model": "m", "precision": "bf16", "method": "none", "distill": "none"}
    assert cell_label(r) == "m bf16/none/none"
    assert cell_label({**r, "kv_cache": "auto"}) == "m bf16/none/none"
    assert cell_label({**r, "kv_cache": float("nan")}) == "m bf16/none/none"  # an index from before the axis
    assert cell_label({**r, "kv_cache": "fp8"}) == "m bf16/none/none kv fp8"

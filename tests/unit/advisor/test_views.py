import json

import pandas as pd
import pytest

from advisor.report import write_report
from advisor.synthetic import write_synthetic_db
from advisor.views import cells_table, compare, pareto_mask, read_all
from harness.store import db as store_db
from tests.conftest import REPO


def test_pareto_mask_hand_case():
    # (memory, drop): a=(1, 5) b=(2, 1) c=(3, 3) d=(4, 0.5) e=(2, 4)
    x = pd.Series([1, 2, 3, 4, 2], index=list("abcde"))
    y = pd.Series([5, 1, 3, 0.5, 4], index=list("abcde"))
    assert list(pareto_mask(x, y)[lambda m: m].index) == ["a", "b", "d"]
    # maximize x (throughput) instead: e is dominated by b, c by d
    assert list(pareto_mask(x, y, x_lower=False)[lambda m: m].index) == ["d"]
    assert not pareto_mask(pd.Series([float("nan")]), pd.Series([1.0])).any()


@pytest.fixture(scope="module")
def synth_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("views") / "r.duckdb"
    write_synthetic_db(path, 4, seed=2)
    return path


def test_cells_table_has_drops_and_compare_has_deltas(synth_db):
    t = read_all(synth_db)
    table = cells_table(t)
    assert len(table) == len(t["cells"]) and table["drop"].notna().all()
    refs = table[(table["method"] == "none") & (table["distill"] == "none")]
    assert (refs["drop"] == 0).all()
    ids = list(table["cell_id"][:3])
    cmp = compare(table, ids)
    assert list(cmp.columns[:3]) == ids and f"Δ vs {ids[1]}" in cmp.columns
    assert cmp.loc["output_tok_s", f"Δ vs {ids[1]}"] == pytest.approx(
        table.set_index("cell_id").loc[ids[1], "output_tok_s"] - table.set_index("cell_id").loc[ids[0], "output_tok_s"]
    )


def test_infeasible_and_failed_cells_are_in_the_table(tmp_path):
    path = tmp_path / "r.duckdb"
    doc = json.loads((REPO / "tests" / "fixtures" / "result-v1.json").read_text())
    infeasible = dict(doc["plan"], cell_id="infeasible00", status="infeasible", reason="needs a CUDA GPU")
    store_db.ingest(path, [(doc["plan"], doc), (infeasible, None)], host={"host_id": "unknown", "label": "unknown"})
    table = cells_table(read_all(path))
    assert set(table["status"]) == {"done", "infeasible"}
    assert table.set_index("cell_id").loc["infeasible00", "reason"] == "needs a CUDA GPU"


def test_report_writes_pngs_and_self_contained_html(synth_db, tmp_path):
    ids = list(read_all(synth_db)["cells"]["cell_id"])
    page = write_report(synth_db, ids, tmp_path / "rep", "synthetic")
    text = page.read_text()
    assert text.count("data:image/png;base64,") == 3 and "<table" in text and ids[0] in text
    for name in ("pareto-peak_mem_gib.png", "pareto-output_tok_s.png", "pareto-ttft_ms_p99.png", "summary.csv"):
        assert (tmp_path / "rep" / name).stat().st_size > 500


def test_table_has_per_concurrency_throughput_per_task_quality_and_cost(synth_db):
    t = read_all(synth_db)
    table = cells_table(t, gpu_price=3.6)
    for col in ("tok_s@c1", "tok_s@c8", "tok_s@c32", "dq_arc_easy.acc", "dq_hellaswag.acc_norm", "usd_per_mtok"):
        assert col in table and table[col].notna().all(), col
    r = table.iloc[0]
    assert r["usd_per_mtok"] == pytest.approx(3.6 / (r["output_tok_s"] * 3600) * 1e6)
    assert cells_table(t)["usd_per_mtok"].isna().all()


def _two_host_db(path):
    """The synthetic index, and the same cells again as measured on a second host (twice as fast)."""
    import duckdb

    write_synthetic_db(path, 2, seed=4)
    con = duckdb.connect(str(path))
    for t in ("cells", "quality", "perf"):
        cols = [
            r[0]
            for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [t]
            ).fetchall()
        ]
        sel = ", ".join(
            "'hostB000002'"
            if c == "host_id"
            else "'GPU B'"
            if c == "host_label"
            else "output_tok_s * 2"
            if c == "output_tok_s"
            else c
            for c in cols
        )
        con.execute(f"INSERT INTO {t} SELECT {sel} FROM {t}")
    con.close()


def test_same_cell_on_two_hosts_is_two_rows(tmp_path):
    path = tmp_path / "r.duckdb"
    _two_host_db(path)
    t = read_all(path)
    table = cells_table(t)
    n = len(t["cells"]) // 2
    assert len(table) == 2 * n and table["key"].is_unique and table["cell_id"].nunique() == n
    assert set(table["host_label"]) == {"synthetic GPU host · 1× H100", "GPU B"}
    cid = table["cell_id"].iloc[0]
    pair = table[table["cell_id"] == cid].set_index("host_id")
    assert pair.loc["hostB000002", "output_tok_s"] == pytest.approx(2 * pair.loc["synth0000000", "output_tok_s"])
    assert (table["drop"].notna()).all()  # each against its own host's reference
    cmp = compare(table, [f"{cid}@synth0000000", f"{cid}@hostB000002"])
    assert cmp.loc["output_tok_s", f"Δ vs {cid}@hostB000002"] == pytest.approx(pair.loc["synth0000000", "output_tok_s"])
    from advisor.views import cell_detail

    d = cell_detail(t, cid, path, "hostB000002")
    assert d["host_id"] == "hostB000002" and len(d["perf"]) == 3
    assert (d["perf"]["host_id"] == "hostB000002").all()


def test_advisor_report_command_writes_only_the_cells_asked_for(synth_db, tmp_path):
    """`advisor report` is what `harness report MATRIX` runs with the matrix's cell ids."""
    from advisor.cli import main

    ids = list(read_all(synth_db)["cells"]["cell_id"])
    assert main(["report", "--out", str(tmp_path / "r"), "--db", str(synth_db), "--cell", ids[0]]) == 0
    summary = pd.read_csv(tmp_path / "r" / "summary.csv")
    assert list(summary["cell_id"]) == [ids[0]]
    assert main(["report", "--out", str(tmp_path / "x"), "--db", str(tmp_path / "none.duckdb")]) == 3

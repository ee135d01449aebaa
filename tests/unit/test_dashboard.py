"""The dashboard's page logic with Streamlit's AppTest (no browser): tables, filters, detail, advisor."""

import sys

import pandas as pd
import pytest

from advisor.synthetic import write_synthetic_db
from tests.conftest import REPO

AppTest = pytest.importorskip("streamlit.testing.v1").AppTest


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("dash") / "r.duckdb"
    n = write_synthetic_db(path, 3, seed=5)
    return path, n


def app(monkeypatch, path):
    monkeypatch.setenv("DQBENCH_DB", str(path))
    at = AppTest.from_file(str(REPO / "dashboard.py"), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


def test_cells_table_and_filters(monkeypatch, db):
    path, n = db
    at = app(monkeypatch, path)
    assert at.title[0].value == "dqbench results"
    assert len(at.dataframe[0].value) == n
    assert any(f"{n} of {n} cells" in c.value for c in at.sidebar.caption)
    at.sidebar.multiselect(key="filter_precision").set_value(["int4"]).run()
    assert not at.exception
    shown = at.dataframe[0].value
    assert len(shown) < n and set(shown["precision"]) == {"int4"}


def test_cell_detail_and_compare(monkeypatch, db):
    path, _ = db
    at = app(monkeypatch, path)
    cells = at.selectbox(key="detail_cell").options
    assert cells
    assert any("lineage:" in m.value for m in at.markdown)
    ids = at.multiselect(key="compare_cells").options[:2]
    at.multiselect(key="compare_cells").set_value([i.split("[")[-1].rstrip("]") for i in ids]).run()
    assert not at.exception


def test_advisor_panel(monkeypatch, db):
    path, _ = db
    at = app(monkeypatch, path)
    at.button(key="adv_go").click().run()
    assert not at.exception
    assert at.success and "Recommended:" in at.success[0].value
    shown = at.dataframe[-2].value  # the recommendations (the rejects follow)
    assert list(shown.columns[:4]) == ["cell_id", "host_label", "verdict", "more_items"]
    assert set(shown["verdict"]) == {"within"}  # conservative, the default: only whole CIs within the limit
    at.selectbox(key="adv_decide").set_value("point").run()
    at.button(key="adv_go").click().run()
    assert at.success and "undecided on the drop limit" in at.success[0].value
    assert "undecided" in set(at.dataframe[-2].value["verdict"])  # ranked, and still called undecided
    at.sidebar.text_input(key="drop_limit").set_value("lots").run()  # the advisor's limit is the sidebar's
    assert at.sidebar.error and "--max-drop 'lots'" in at.sidebar.error[0].value
    at.button(key="adv_go").click().run()
    assert at.error and "--max-drop" in at.error[0].value


def test_missing_database_explains_how_to_make_one(monkeypatch, tmp_path):
    at = app(monkeypatch, tmp_path / "none.duckdb")
    assert at.info and "./dq run" in at.info[0].value


def test_host_filter_and_two_hosts_as_two_rows(monkeypatch, tmp_path):
    from tests.unit.advisor.test_views import _two_host_db

    path = tmp_path / "two.duckdb"
    _two_host_db(path)
    at = app(monkeypatch, path)
    table = at.dataframe[0].value
    assert "host_label" in table and set(table["host_label"]) == {"synthetic GPU host · 1× H100", "GPU B"}
    assert len(table) == 2 * table["cell_id"].nunique()  # the same cell id on two hosts: two rows
    hosts = at.sidebar.multiselect(key="filter_host")
    assert hosts.value == [] and len(hosts.options) == 2  # default: every host
    assert any("on 2 host(s)" in c.value for c in at.sidebar.caption)
    hosts.set_value(["hostB000002"]).run()
    assert not at.exception
    shown = at.dataframe[0].value
    assert set(shown["host_label"]) == {"GPU B"} and len(shown) == len(table) // 2
    assert all("on GPU B [" in o for o in at.selectbox(key="detail_cell").options)
    at.button(key="adv_go").click().run()
    assert not at.exception and at.success and "measured on GPU B [hostB000002]" in at.success[0].value


def test_a_database_held_by_another_process_is_one_error_not_a_traceback(monkeypatch, tmp_path):
    import harness.store.db
    from tests.fakes.duckdb_holder import held

    path = tmp_path / "held.duckdb"  # a path no earlier test loaded: the page's cache cannot answer for it
    write_synthetic_db(path, 1, seed=1)
    monkeypatch.setattr(harness.store.db, "READ_WAIT_S", 0.5)  # AppTest runs the page in this process
    with held(path) as pid:
        at = app(monkeypatch, path)
    assert len(at.error) == 1 and not at.dataframe
    assert f"the results index {path} is locked by PID {pid}" in at.error[0].value


def test_a_file_that_is_not_duckdb_is_one_error(monkeypatch, tmp_path):
    path = tmp_path / "notes.duckdb"
    path.write_text("not a database\n")
    at = app(monkeypatch, path)
    assert len(at.error) == 1 and f"`{path}` is not a DuckDB database" in at.error[0].value


def test_the_path_field_opens_only_the_index_the_results_folder_or_the_command_lines_database(monkeypatch, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    monkeypatch.setenv("DQBENCH_RESULTS", str(results))
    index = results / "dqbench.duckdb"
    write_synthetic_db(index, 1, seed=2)
    at = app(monkeypatch, index)
    assert at.dataframe and not at.error

    def field():  # the field of the latest run (an element of an earlier run is stale)
        return at.sidebar.text_input[0]

    secret = tmp_path / "secret.txt"
    secret.write_text("password\n")
    outside = tmp_path / "outside.db"  # a DuckDB database, but not in the results folder
    write_synthetic_db(outside, 1, seed=2)
    link = results / "link.db"  # inside the results folder by name, outside by where it leads
    link.symlink_to(outside)
    named = tmp_path / "elsewhere.duckdb"  # a name no longer opens a file (only where it is, or the command line)
    named.write_bytes(index.read_bytes())
    for refused in (secret, outside, link, tmp_path / "missing.txt", named):
        field().set_value(str(refused)).run()
        assert not at.exception and len(at.error) == 1, refused
        assert f"`{refused}` is not a results database this page opens" in at.error[0].value
        assert str(index) in at.error[0].value and "--db PATH" in at.error[0].value and not at.dataframe

    copy = results / "copy.db"  # under the results folder: any name
    copy.write_bytes(index.read_bytes())
    field().set_value(str(copy)).run()
    assert not at.exception and not at.error and at.dataframe
    # a database given on the command line (`./dq dashboard -- --db PATH`) opens wherever it is
    monkeypatch.setattr(sys, "argv", ["dashboard.py", "--db", str(named)])
    at = app(monkeypatch, index)
    assert field().value == str(named) and not at.error and at.dataframe


def test_a_crafted_database_cannot_show_local_files(monkeypatch, tmp_path):
    """A DuckDB file handed over by someone (here under the results folder, where the page opens any file)
    whose `cells` is a view over read_text() of a local file: DuckDB's external access is off, so the page
    shows one error and never the file."""
    import duckdb

    results = tmp_path / "results"
    results.mkdir()
    monkeypatch.setenv("DQBENCH_RESULTS", str(results))
    secret = tmp_path / "private.txt"
    secret.write_text("TOP-SECRET-LINE-4711\n")
    crafted = results / "shared.duckdb"
    con = duckdb.connect(str(crafted))
    for table in ("quality", "perf", "flips"):
        con.execute(f"CREATE TABLE {table} (cell_id VARCHAR, host_id VARCHAR)")
    con.execute(
        f"CREATE VIEW cells AS SELECT content AS cell_id, content AS host_id, content AS label, "
        f"content AS status FROM read_text('{secret}')"
    )
    assert "TOP-SECRET" in con.execute("SELECT cell_id FROM cells").fetchone()[0]  # what the view would show
    con.close()
    at = app(monkeypatch, crafted)
    assert not at.exception and len(at.error) == 1 and not at.dataframe
    shown = " ".join(str(e.value) for e in [*at.error, *at.markdown, *at.info, *at.caption])
    assert "TOP-SECRET" not in shown
    assert "disabled by configuration" in at.error[0].value or "Permission" in at.error[0].value


def test_the_page_cache_is_bounded():
    import dashboard

    assert dashboard.LOAD_CACHE_ENTRIES == 8
    assert dashboard.load._info.max_entries == dashboard.LOAD_CACHE_ENTRIES  # streamlit's cache keeps no more


def charts(at) -> list[tuple[dict, dict]]:
    """Each Vega-Lite chart on the page: (its spec, its datasets by name as DataFrames)."""
    import json

    import pyarrow as pa

    out = []
    for c in at.get("vega_lite_chart"):
        data = {d.name: pa.ipc.open_stream(d.data.data).read_all().to_pandas() for d in c.proto.datasets}
        out.append((json.loads(c.proto.spec), data))
    return out


def pareto(at) -> list[tuple[dict, pd.DataFrame]]:
    """The Pareto tab's charts: (spec, the points' data)."""
    out = []
    for spec, data in charts(at):
        if not str(spec.get("title", "")).startswith("quality drop vs"):
            continue
        points = next(layer for layer in spec["layer"] if layer["mark"]["type"] == "point")
        out.append((spec, data[points.get("data", spec.get("data"))["name"]]))  # its own, or the chart's
    return out


def test_pareto_points_carry_their_ci_and_verdict_against_the_sidebar_limit(monkeypatch, db):
    from advisor.constraints import Constraints, parse_max_drop
    from advisor.query import build_frame
    from advisor.select import recommend
    from advisor.synthetic import synthetic_tables
    from advisor.verdict import VERDICTS

    path, _ = db
    at = app(monkeypatch, path)
    at.sidebar.text_input(key="drop_limit").set_value("1.5pt").run()
    assert not at.exception
    views = pareto(at)
    assert len(views) == 3  # memory, tok/s, TTFT p99
    cells, quality, perf = synthetic_tables(3, seed=5)  # what `db` holds
    advisor = recommend(build_frame(cells, quality, perf, None, None, 1), Constraints(max_drop=parse_max_drop("1.5pt")))
    expected = dict(zip(advisor.frame["cell_id"], advisor.frame["verdict"]))
    for spec, d in views:
        layers = {layer["mark"]["type"]: layer for layer in spec["layer"][:3]}
        bars, points = layers["rule"], layers["point"]
        # the error bar spans the 95% CI; the verdict is the marker's shape and its colour
        assert (bars["encoding"]["y"]["field"], bars["encoding"]["y2"]["field"]) == ("y_lo", "y_hi")
        assert points["encoding"]["shape"]["field"] == points["encoding"]["color"]["field"] == "verdict"
        assert points["encoding"]["shape"]["scale"]["domain"] == ["within", "undecided", "beyond"]
        label = points["encoding"]["y"]["axis"]["labelExpr"]
        assert "' pt'" in label and "\u2212" in label and "0.000000" not in label
        assert spec["layer"][3]["encoding"]["y"]["field"] == "limit"  # the limit, drawn as a line
        assert set(d["verdict"]) <= set(VERDICTS) and len(set(d["verdict"])) >= 2
        assert dict(zip(d["cell_id"], d["verdict"])) == {c: expected[c] for c in d["cell_id"]}  # the advisor's
        ci = d.dropna(subset=["y_lo", "y_hi"])
        assert (ci["y_lo"] <= ci["y"] + 1e-9).all() and (ci["y"] <= ci["y_hi"] + 1e-9).all()
        assert (ci.loc[ci["verdict"] == "within", "y_hi"] <= 1.5).all()
        assert (ci.loc[ci["verdict"] == "beyond", "y_lo"] > 1.5).all()
        und = ci[ci["verdict"] == "undecided"]
        assert ((und["y_lo"] <= 1.5) & (und["y_hi"] > 1.5)).all()
        # hover reads as a person writes it: '+1.6 pt', '−0.4 to +3.6 pt', '≈N more items'
        assert d["drop_text"].str.fullmatch(r"([+\u2212]\d+\.\d|0\.0) pt").all()
        assert (
            d.loc[~d["ci_text"].str.startswith("the reference"), "ci_text"]
            .str.fullmatch(r"(([+\u2212]\d+\.\d|0\.0) to ([+\u2212]\d+\.\d|0\.0) pt)|no 95% CI")
            .all()
        )
        assert d.loc[d["verdict"] == "undecided", "verdict_text"].str.contains("more items would decide it").all()
        tips = {t.get("title") for t in points["encoding"]["tooltip"]}
        assert {"quality drop", "95% CI", "verdict"} <= tips
    # a relative limit: the axis in %, the drops x 100
    at.sidebar.text_input(key="drop_limit").set_value("2%").run()
    spec, d = pareto(at)[0]
    point = next(layer for layer in spec["layer"] if layer["mark"]["type"] == "point")
    assert "' %'" in point["encoding"]["y"]["axis"]["labelExpr"]
    assert d["drop_text"].str.endswith(" %").all() and d.loc[d["y"] > 0, "drop_text"].str.startswith("+").all()


def test_pareto_without_a_usable_limit_still_draws_the_cis(monkeypatch, db):
    path, _ = db
    at = app(monkeypatch, path)
    at.sidebar.text_input(key="drop_limit").set_value("two percent").run()
    assert not at.exception and at.sidebar.error and "--max-drop 'two percent'" in at.sidebar.error[0].value
    views = pareto(at)
    assert views and all(set(d["verdict"]) == {"no limit set"} for _, d in views)
    assert all(d["y_hi"].notna().any() for _, d in views)  # the error bars stay


def curve_charts(at) -> dict[str, tuple[dict, pd.DataFrame, list[float]]]:
    """The Curves tab's charts by title: (spec, the level points' data, the SLO lines' bounds)."""
    out = {}
    for spec, data in charts(at):
        title = str(spec.get("title", ""))
        if " vs " not in title or title.startswith("quality drop"):
            continue
        points = next(layer for layer in spec["layer"] if layer["mark"]["type"] == "point")
        rules = [layer for layer in spec["layer"] if layer["mark"]["type"] == "rule"]
        bounds = data[rules[0]["data"]["name"]]["bound"].tolist() if rules else []
        out[title] = (spec, data[points.get("data", spec.get("data"))["name"]], bounds)
    return out


def test_curves_tab_draws_each_cell_through_its_levels_with_slo_and_sweep_marks(monkeypatch, tmp_path):
    from advisor import curves
    from harness.store import db as store
    from tests.unit.store.test_curves import result

    path = tmp_path / "curves.duckdb"
    sweep = {
        "sync_req_s": 0.5,
        "max_req_s": 3.0,
        "rates": [1.6],
        "saturation_req_s": 1.6,
        "saturation_reason": "achieved rate below 90% of the target",
        "max_rate_at_slo_req_s": None,
    }
    a, b = result("c0ffee00000a", sweep=sweep), result("c0ffee00000b")
    a["perf"]["levels"][1].update(profile="constant", level=1.6)  # the sweep's rate level, where it saturated
    store.ingest(path, [(r["plan"], r) for r in (a, b)])
    at = app(monkeypatch, path)
    views = curve_charts(at)
    spec, d, bounds = views["TTFT p50 (ms) vs output tok/s, whole server (per system)"]
    assert len(d) == 6 and d["cell_id"].nunique() == 2  # one line per cell, through its 3 levels
    layers = [layer["mark"]["type"] for layer in spec["layer"]]
    assert layers[:2] == ["line", "point"] and "rule" in layers  # lines, level points, the SLO line
    assert bounds == [500.0]  # the stored load.slo TTFT bound
    assert d.loc[d["level"] == 16, "noisy"].all() and not d.loc[d["level"] != 16, "noisy"].any()
    assert d.set_index(["cell_id", "level"]).loc[("c0ffee00000a", 1.6), "marks"] == "saturation"
    assert set(d["where"]) == {"steady window", "whole level"}  # c16's steady window held 3 requests
    assert any("rings: a sweep's saturation rate" in c.value for c in at.caption)
    _, u, _ = views["tokens/s per user vs per system"]
    assert u["user_tok_s"].tolist() == pytest.approx((1000 / d["tpot_ms_p50"]).tolist())
    sweeps = next(df.value for df in at.dataframe if list(df.value.columns[-7:]) == curves.SWEEP_COLS)
    assert sweeps["sweep_saturation_req_s"].tolist() == [1.6]
    # another latency, an asked SLO line, and a bad one is one error
    at.selectbox(key="curve_y").set_value("e2e_ms_p99").run()
    at.text_input(key="curve_slo").set_value("2s").run()
    assert not at.exception
    assert curve_charts(at)["end-to-end p99 (ms) vs output tok/s, whole server (per system)"][2] == [2000.0]
    at.text_input(key="curve_slo").set_value("soon").run()
    assert at.error and "SLO line 'soon': expected a latency above 0" in at.error[0].value


def test_advisor_tab_takes_a_latency_slo_and_a_minimum_goodput(monkeypatch, tmp_path):
    from harness.store import db as store
    from tests.unit.advisor.test_slo import consistent

    path = tmp_path / "slo.duckdb"
    r = consistent("c0ffee0000aa")
    store.ingest(path, [(r["plan"], r)])
    at = app(monkeypatch, path)
    at.text_input(key="adv_slo_ttft").set_value("0.5s").run()
    at.text_input(key="adv_slo_tpot").set_value("50ms").run()
    at.text_input(key="adv_min_goodput").set_value("1").run()
    at.button(key="adv_go").click().run()
    assert not at.exception and at.success, [e.value for e in at.warning]
    assert "At the SLO: concurrency 4 meets TTFT <= 500 ms, TPOT <= 50 ms" in at.success[0].value
    at.text_input(key="adv_min_goodput").set_value("5").run()
    at.button(key="adv_go").click().run()
    assert at.warning and "req/s of goodput short at the SLO" in at.warning[0].value
    at.text_input(key="adv_slo_ttft").set_value("soon").run()
    at.button(key="adv_go").click().run()
    assert at.error and "--slo-ttft 'soon': expected a latency above 0" in at.error[0].value


def test_roofline_tab_draws_measured_points_under_their_limits(monkeypatch, tmp_path):
    import json as _json

    from harness.predict.roofline import roofline_of
    from harness.result import CellResult
    from harness.store import db as store
    from tests.unit.predict.conftest import FIGS

    r = CellResult.model_validate(_json.loads((REPO / "tests" / "fixtures" / "result-v3.json").read_text()))
    r = r.model_copy(update={"roofline": roofline_of(r, FIGS)})
    path = tmp_path / "roof.duckdb"
    store.ingest(path, [(r.plan, r)])
    at = app(monkeypatch, path)
    roof = [(spec, data) for spec, data in charts(at) if "under its roofline" in str(spec.get("title", ""))]
    assert roof, "no roofline chart"
    spec, data = roof[0]
    assert [layer["mark"]["type"] for layer in spec["layer"]] == ["line", "point"]
    d = next(iter(data.values()))
    assert len(d) == 3 and (d["measured_tok_s"] <= d["roofline_tok_s"] * 10).all()  # three closed-loop levels
    assert set(d["regime"]) <= {"memory-bound", "compute-bound"}


def test_long_context_tab_draws_score_and_drop_per_length(monkeypatch, tmp_path):
    import duckdb

    path = tmp_path / "long.duckdb"
    write_synthetic_db(path, 2, seed=3)
    con = duckdb.connect(str(path))
    cells = con.execute("SELECT cell_id, host_id, parent_id FROM cells").fetchall()
    child = next(c for c in cells if c[2] is not None)
    fcols = [r[0] for r in con.execute("DESCRIBE flips").fetchall()]
    for cell_id, host_id, _ in (child, next(c for c in cells if c[0] == child[2])):
        for n, v in ((1024, 1.0), (4096, 0.5)):
            row = {"cell_id": cell_id, "host_id": host_id, "task": f"dq_niah@{n}", "metric": "acc", "value": v, "n": 8}
            con.execute(
                f"INSERT INTO quality ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values())
            )
    for n, d in ((1024, 0.0), (4096, 0.25)):
        row = {
            "cell_id": child[0],
            "host_id": child[1],
            "ref_id": child[2],
            "task": f"dq_niah@{n}",
            "metric": "acc",
            "n": 8,
            "drop_abs": d,
            "drop_ci_lo": 0.0,
            "drop_ci_hi": d + 0.25,
        }
        row = {k: v for k, v in row.items() if k in fcols}
        con.execute(f"INSERT INTO flips ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values()))
    con.close()
    at = app(monkeypatch, path)
    assert any(s.value == "dq_niah: quality against context length" for s in at.subheader)
    assert any("paired bootstrap over the same documents" in c.value for c in at.caption)
    table = next(d.value for d in at.dataframe if "length" in d.value.columns)
    assert sorted(set(table["length"])) == [1024, 4096] and table["drop_abs"].max() == 0.25


def test_long_context_tab_says_how_to_get_one(monkeypatch, db):
    path, _ = db
    at = app(monkeypatch, path)
    assert any("context_lengths" in i.value for i in at.info)

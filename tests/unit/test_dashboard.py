"""The dashboard's page logic with Streamlit's AppTest (no browser): tables, filters, detail, advisor."""

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
    at.text_input(key="adv_drop").set_value("lots").run()
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

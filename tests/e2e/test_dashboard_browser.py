"""The dashboard in a real browser: `streamlit run` on a free local port, headless Chromium through
Playwright. Filter, open a cell, run the advisor panel; assert on what is rendered; save a screenshot."""

import json

import pytest

from advisor.synthetic import write_synthetic_db
from harness.store import db as store_db
from tests.conftest import REPO
from tests.fakes.browser import browser_page, chromium_path, dashboard

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
pytest.importorskip("playwright")
pytest.importorskip("streamlit")
if chromium_path() is None:
    pytest.skip("Debian's chromium is not installed (.ci/run installs it)", allow_module_level=True)

SHOTS = REPO / "results" / "screenshots"


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("browser") / "r.duckdb"
    n = write_synthetic_db(path, 2, seed=7)
    # and one real measured cell, from the frozen fixture of a real run
    doc = json.loads((REPO / "tests" / "fixtures" / "result-v1.json").read_text())
    store_db.ingest(path, [(doc["plan"], doc)])
    return path, n + 1


def test_filter_detail_and_advisor_in_chromium(db, tmp_path):
    path, n = db
    SHOTS.mkdir(parents=True, exist_ok=True)
    with dashboard(path, tmp_path / "streamlit.log") as url, browser_page() as page:
        page.goto(url)
        page.get_by_text("dqbench results").wait_for(timeout=90_000)
        sidebar = page.locator('[data-testid="stSidebar"]')
        sidebar.get_by_text(f"{n} of {n} cells").wait_for(timeout=60_000)
        page.get_by_text("Download CSV").wait_for()

        # filter: precision = int4
        sidebar.locator('[data-testid="stMultiSelect"]').filter(has_text="precision").click()
        page.get_by_role("option", name="int4").click()
        page.keyboard.press("Escape")
        sidebar.get_by_text(f"of {n} cells").filter(has_not_text=f"{n} of {n}").wait_for(timeout=30_000)
        shown = int(sidebar.get_by_text(f"of {n} cells").inner_text().split()[0])
        assert 0 < shown < n

        # open a cell
        page.get_by_role("tab", name="Cell detail").click()
        # under load the tab can first render the pre-filter selection: wait for the rerun with the filter
        page.get_by_text("lineage:").filter(has_text="int4").wait_for(timeout=30_000)
        assert "int4" in page.get_by_text("lineage:").inner_text()

        # the advisor panel
        page.get_by_role("tab", name="Advisor").click()
        page.get_by_role("button", name="Recommend").click()
        page.get_by_text("Recommended:").wait_for(timeout=30_000)
        assert "vllm serve" in page.locator('[data-testid="stCode"]').first.inner_text()
        page.screenshot(path=str(SHOTS / "dashboard-advisor.png"), full_page=True)
    assert (SHOTS / "dashboard-advisor.png").stat().st_size > 10_000

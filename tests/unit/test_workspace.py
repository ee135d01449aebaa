"""harness/workspace.py: a cell's paths come from the store's layout, and no plugin rebuilds that layout."""

import re

from harness.store.results import ResultStore
from harness.workspace import CellPaths
from tests.conftest import REPO


def test_cell_paths_are_the_stores_folders(tmp_path):
    store = ResultStore(tmp_path / "results")
    p = CellPaths.of(store, "c1", "host-a").create()
    assert p.logs == store.logs_dir("c1") and p.work == store.work_dir("c1")
    assert p.measured == store.work_dir("c1") / "host-a" and p.measured.is_dir() and p.logs.is_dir()
    assert p.log("compress") == store.logs_dir("c1") / "compress.log"


def test_no_plugin_knows_the_results_layout():
    """Plugins write where CellPaths says; `results_dir / "logs"` rebuilt in a plugin is the layout leaking."""
    plugins = [*(REPO / "harness" / "compress").glob("*.py"), *(REPO / "harness" / "distill").glob("*.py")]
    plugins += [REPO / "harness" / "evaluate" / "lmeval.py", *(REPO / "harness" / "serve").glob("*.py")]
    leaks = [
        f"{p.relative_to(REPO)}: {m.group(0)}"
        for p in plugins
        for m in re.finditer(r'results_dir\b.*|/ "logs" /.*', p.read_text())
    ]
    assert leaks == []

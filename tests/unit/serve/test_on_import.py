"""harness/serve/on_import.py: a function runs right after a module's own code the first time it loads, at once
when it has loaded already, and a hook called again adds no second finder."""

from __future__ import annotations

import importlib
import sys

from harness.serve.on_import import OnImport, when_imported


def test_after_runs_once_the_module_has_loaded(monkeypatch, tmp_path):
    seen = []
    (tmp_path / "dq_on_import_probe.py").write_text("LOADED = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    finders = list(sys.meta_path)
    try:
        when_imported("dq_on_import_probe", lambda: seen.append(sys.modules["dq_on_import_probe"].LOADED))
        when_imported("dq_on_import_probe", lambda: seen.append("twice"))  # one finder per module
        assert [f.name for f in sys.meta_path if isinstance(f, OnImport)] == ["dq_on_import_probe"] and seen == []
        importlib.import_module("dq_on_import_probe")
        assert seen == [True]  # after the module's own code, once
        assert sys.meta_path == finders  # the finder is gone
        when_imported("dq_on_import_probe", lambda: seen.append("now"))  # loaded already: at once
        assert seen == [True, "now"] and sys.meta_path == finders
    finally:
        sys.meta_path[:] = finders
        sys.modules.pop("dq_on_import_probe", None)


def test_other_modules_pass_by():
    finder = OnImport("dq_not_this_one", lambda: None)
    assert finder.find_spec("json") is None

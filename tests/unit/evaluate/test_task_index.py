"""The cached lm-eval task index (harness/evaluate/task_index.py): the same index lm-eval's own build gives,
built once per tree, rebuilt when a YAML changes or the cache file is torn. Small YAML trees through
lm-eval's real `TaskIndex.build`; the full task folder is left to the evaluate worker's slow test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.evaluate.task_index import cached_index, merged_build, tree_key

pytest.importorskip("lm_eval")


def _tree(root: Path, tasks: dict[str, str]) -> Path:
    for name, text in tasks.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def _plain():
    from lm_eval.tasks._index import TaskIndex

    return TaskIndex.__dict__["build"].__func__


def _flat(index: dict) -> dict:
    return {k: (e.kind, e.yaml_path, e.cfg, e.tags) for k, e in index.items()}


@pytest.fixture
def trees(tmp_path):
    defaults = _tree(
        tmp_path / "defaults",
        {
            "arc/_base.yaml": "output_type: multiple_choice\ndoc_to_text: q\n",
            "arc/easy.yaml": "include: _base.yaml\ntask: easy\ntag: [arc]\n",
            "arc/hard.yaml": "include: _base.yaml\ntask: hard\ntag: [arc]\n",
            "grp/g.yaml": "group: g\ntask: [easy, hard]\n",
        },
    )
    ours = _tree(tmp_path / "ours", {"easy.yaml": "task: easy\noutput_type: loglikelihood\ntag: null\n"})
    return defaults, ours


def test_the_merged_index_is_lm_evals_own(trees, tmp_path):
    defaults, ours = trees
    plain = _plain()
    built = merged_build(plain, defaults, "0.4.13", tmp_path / "cache")
    want = _flat(plain([defaults, ours]))
    assert _flat(built([defaults, ours])) == want  # first call: builds and writes the cache
    assert _flat(built([defaults, ours])) == want  # second: the defaults' part from the cache
    assert want["easy"][1] == ours / "easy.yaml"  # the include folder still overrides the default task
    assert len(list((tmp_path / "cache").glob("*.json"))) == 1 and not list((tmp_path / "cache").glob("*.pkl"))


def test_built_once_then_read_until_a_yaml_changes(trees, tmp_path):
    defaults, _ = trees
    calls = []

    def build(paths, **kw):
        calls.append(paths)
        return _plain()(paths, **kw)

    cache = tmp_path / "cache"
    first = cached_index(build, defaults, "0.4.13", cache)
    again = cached_index(build, defaults, "0.4.13", cache)
    assert len(calls) == 1 and _flat(first) == _flat(again)
    key = tree_key(defaults, "0.4.13")
    (defaults / "arc" / "hard.yaml").write_text("include: _base.yaml\ntask: harder\n")
    assert tree_key(defaults, "0.4.13") != key
    changed = cached_index(build, defaults, "0.4.13", cache)
    assert len(calls) == 2 and "harder" in changed and "hard" not in changed
    assert tree_key(defaults, "0.4.14") != tree_key(defaults, "0.4.13")  # another lm-eval: another index


def test_a_torn_cache_file_is_rebuilt_not_trusted(trees, tmp_path, capsys):
    defaults, _ = trees
    cache = tmp_path / "cache"
    want = _flat(cached_index(_plain(), defaults, "0.4.13", cache))
    (doc,) = cache.glob("*.json")
    doc.write_bytes(doc.read_bytes()[:20])
    assert _flat(cached_index(_plain(), defaults, "0.4.13", cache)) == want
    assert "unreadable" in capsys.readouterr().out
    assert not [p for p in os.listdir(cache) if p.endswith(".tmp")]


def test_the_cache_is_checked_json_never_a_pickle(trees, tmp_path, capsys):
    """DQBENCH_HOME is shared on clusters: a cache file someone else wrote must never run code when read. A
    pickle dropped under the cache's name is not read as an index (it is not JSON); an entry with a field of
    the wrong type is refused; both are rebuilt."""
    import json
    import pickle

    defaults, _ = trees
    cache = tmp_path / "cache"
    want = _flat(cached_index(_plain(), defaults, "0.4.13", cache))
    (doc,) = cache.glob("*.json")
    good = json.loads(doc.read_text())
    assert good["format"] == 2 and {e["kind"] for e in good["entries"]} <= {"TASK", "GROUP", "TAG", "PY_TASK"}

    class Boom:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    doc.write_bytes(pickle.dumps(Boom()))
    assert _flat(cached_index(_plain(), defaults, "0.4.13", cache)) == want
    assert not (tmp_path / "pwned").exists() and "unreadable" in capsys.readouterr().out
    bad = json.loads(doc.read_text())
    bad["entries"][0]["tags"] = "not a list"
    doc.write_text(json.dumps(bad))
    assert _flat(cached_index(_plain(), defaults, "0.4.13", cache)) == want
    assert "a bad config or tags" in capsys.readouterr().out

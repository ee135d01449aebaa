"""Prototype of the issue-#20 request-equality test (pytest). lm-eval's ORIGINAL task (built-in index,
hub ids) and the offline override must produce identical Instances on the same documents. The original's
datasets.load_dataset is intercepted: it must ask for exactly the hub (path, name) the override replaces."""
import json, os, sys
from unittest import mock

import pytest

os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
import datasets  # noqa: E402
from lm_eval.tasks import TaskManager  # noqa: E402

DATA, TASKS = "/tmp/research20/data", "/tmp/research20/tasks"
SOURCES = json.load(open(f"{DATA}/sources.json"))
sys.path.insert(0, TASKS)
from dq_offline import load as offline_load  # noqa: E402

EMPTY = {"train"}


@pytest.fixture(scope="module")
def managers():
    return TaskManager(), TaskManager(include_path=TASKS)


def hub_stand_in(asked):
    def fake(path=None, name=None, **kw):
        key = f"{path}|{name}"
        asked.add(key)
        assert key in SOURCES, f"original asks for {key}"
        return offline_load({s: f for s, f in SOURCES[key].items() if s not in EMPTY},
                            [s for s in SOURCES[key] if s in EMPTY])
    return fake


def instances(tm, name, shots, limit):
    out = {}
    for tname, task in sorted(tm.load([name])["tasks"].items()):
        if shots is not None:
            task.set_config("num_fewshot", shots)
        task.set_fewshot_seed(seed=1234)
        task.build_all_requests(limit=limit, rank=0, world_size=1)
        out[tname] = [(i.request_type, i.doc_id, i.idx, i.arguments) for i in task.instances]
    return out


@pytest.mark.parametrize("name,shots", [
    ("arc_easy", None), ("arc_challenge", 0), ("hellaswag", None), ("winogrande", None), ("piqa", None),
    ("boolq", None), ("openbookqa", None), ("lambada_openai", None), ("gsm8k", 0), ("gsm8k_cot", None),
    ("mmlu_anatomy", 5), ("mmlu_stem", 5), ("mmlu", 0)])
def test_same_requests(managers, name, shots):
    orig_tm, off_tm = managers
    asked = set()
    with mock.patch.object(datasets, "load_dataset", hub_stand_in(asked)):
        o = instances(orig_tm, name, shots, limit=20)
    f = instances(off_tm, name, shots, limit=20)
    assert asked and sorted(o) == sorted(f)
    assert o == f
    assert all(len(v) > 0 for v in f.values())


@pytest.mark.parametrize("name,shots", [("arc_challenge", 25), ("hellaswag", 10), ("gsm8k", None)])
def test_shots_from_missing_split_fail_loudly(managers, name, shots):
    with pytest.raises(AssertionError, match="no documents available for sampling"):
        instances(managers[1], name, shots, limit=2)

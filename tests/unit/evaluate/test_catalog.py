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

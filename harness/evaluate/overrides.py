"""lm-eval's own task configs with only the data source redirected: one small override YAML per task.

    include: <lm-eval's own yaml>        # prompts, few-shot, filters, metrics: lm-eval's, untouched
    task: <the same name>                # an include-path task of the same name overrides the built-in one
    tag: null                            # else our folder's tag entry would replace lm-eval's whole tag
    custom_dataset: !function dq_offline.load
    dataset_kwargs: {data_files: {split: arrow file}, empty_splits: [train]}

Groups (`mmlu`, `mmlu_stem`) and tags resolve their members by name in lm-eval's merged index, so they
use the overrides without any group file being rewritten. Written by the lm-eval worker (it knows the
evaluation interpreter's lm-eval folder); the request-equality test renders the same way
(tests/unit/evaluate/test_lmeval_offline.py). Why this mechanism and not the others:
docs/research/offline-lmeval-tasks/README.md section 2. No heavy imports.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from harness.evaluate.catalog import Leaf

LOADER = Path(__file__).with_name("dq_offline.py")


def override_yaml(name: str, included: Path, data_files: dict[str, str], empty: list[str]) -> str:
    kwargs = json.dumps({"data_files": data_files, "empty_splits": empty}, sort_keys=True)
    return (
        f"include: {json.dumps(str(included))}\n"
        f"task: {name}\n"
        "tag: null\n"
        "custom_dataset: !function dq_offline.load\n"
        f"dataset_kwargs: {kwargs}\n"  # JSON is YAML
    )


def render(leaves: Mapping[str, Leaf], tasks_root: Path, data_dir: Path, out: Path) -> Path:
    """Write the overrides of `leaves` ({name: its catalog leaf, harness/evaluate/catalog.py}) into `out`,
    with the loader beside them; returns `out` (an lm-eval include path)."""
    sources = json.loads((data_dir / "lmeval" / "sources.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(LOADER, out / LOADER.name)
    for name, leaf in sorted(leaves.items()):
        src = sources[leaf.dataset]
        files = {split: str(data_dir / rel) for split, rel in src["files"].items()}
        text = override_yaml(name, tasks_root / leaf.yaml, files, list(src["empty"]))
        tmp = out / f".{name}.yaml.tmp"
        tmp.write_text(text)
        os.replace(tmp, out / f"{name}.yaml")
    return out

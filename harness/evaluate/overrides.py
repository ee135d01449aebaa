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
docs/research/offline-lmeval-tasks/README.md section 2.

A task that executes generated code (`humaneval`, lm-eval `unsafe_code: true`) cannot `include:` lm-eval's YAML:
lm-eval imports the `!function` modules of every YAML it reads, and humaneval's `utils.py` loads HF `evaluate`'s
`code_eval` from the hub on import. Its override (`code_override_yaml`) is lm-eval's YAML inlined instead, every key
as lm-eval wrote it (prompt, target, stop strings, greedy generation, `unsafe_code`), with only its `!function`s
swapped for dqbench's sandboxed equivalents (`CODE_FUNCTIONS`, harness/evaluate/code_metric.py); a function
it does not know fails the rendering, so an lm-eval upgrade cannot slip one past. PyYAML is imported only there.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from harness.evaluate.catalog import Leaf

LOADER = Path(__file__).with_name("dq_offline.py")
_METRIC = "harness.evaluate.code_metric"
# code-executing leaves: lm-eval's `!function` names in their YAML -> dqbench's (importable from the worker)
CODE_FUNCTIONS: dict[str, dict[str, str]] = {
    "humaneval": {"utils.pass_at_k": f"{_METRIC}.pass_at_1", "utils.build_predictions": f"{_METRIC}.build_predictions"},
}


class FunctionRef(str):
    """A YAML `!function` reference, kept as its dotted name (never imported here)."""


def _swap(node: object, names: dict[str, str], where: str) -> object:
    if isinstance(node, FunctionRef):
        if node not in names:
            raise ValueError(
                f"{where}: lm-eval's !function {node} has no sandboxed stand-in (overrides.CODE_FUNCTIONS)"
            )
        return FunctionRef(names[node])
    if isinstance(node, dict):
        return {k: _swap(v, names, where) for k, v in node.items()}
    if isinstance(node, list):
        return [_swap(v, names, where) for v in node]
    return node


def code_override_yaml(name: str, included: Path, data_files: dict[str, str], empty: list[str]) -> str:
    """lm-eval's config of the code task `name` (its YAML at `included`, without includes of its own) with its
    functions swapped (CODE_FUNCTIONS) and its documents read from `data_files`."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    class Dumper(yaml.SafeDumper):
        pass

    Loader.add_constructor("!function", lambda loader, node: FunctionRef(loader.construct_scalar(node)))
    Dumper.add_representer(FunctionRef, lambda d, v: d.represent_scalar("!function", str(v)))
    cfg = yaml.load(included.read_text(), Loader=Loader)  # SafeLoader + one tag that builds a str
    if "include" in cfg or cfg.get("task") != name:
        raise ValueError(f"{included}: expected the stand-alone config of {name!r}")
    cfg = _swap(cfg, CODE_FUNCTIONS[name], str(included))
    assert isinstance(cfg, dict)
    cfg.update(
        tag=None,
        custom_dataset=FunctionRef("dq_offline.load"),
        dataset_kwargs={"data_files": data_files, "empty_splits": empty},
    )
    return yaml.dump(cfg, Dumper=Dumper, sort_keys=False, allow_unicode=True, width=1_000_000)


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
        make = code_override_yaml if name in CODE_FUNCTIONS else override_yaml
        text = make(name, tasks_root / leaf.yaml, files, list(src["empty"]))
        tmp = out / f".{name}.yaml.tmp"
        tmp.write_text(text)
        os.replace(tmp, out / f"{name}.yaml")
    return out

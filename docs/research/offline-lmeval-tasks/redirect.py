"""Prototype: lm-eval's OWN task configs, data source redirected to local files.

For every task in lm-eval's index whose (dataset_path, dataset_name) has local data, write a tiny YAML
    include: <lm-eval's own yaml>      # prompts, few-shot, filters, metrics: untouched
    task: <same name>                  # same name -> overrides the built-in entry (include_path wins)
    tag: null                          # keep lm-eval's own tag entries (they refer to tasks by name)
    dataset_path: arrow
    dataset_name: null
    dataset_kwargs: {data_files: {split: file}}
into OUT; TaskManager(include_path=OUT) then resolves `arc_easy`, `mmlu`, `mmlu_stem`, ... to them.
"""
import json, shutil, sys
from pathlib import Path

import yaml
from lm_eval.tasks import TaskManager
from lm_eval.tasks._index import Kind


EMPTY = {"train"}  # splits prep.py wrote empty (not in the package)


def render(sources: dict, out: Path) -> dict[str, str]:
    out.mkdir(parents=True, exist_ok=True)
    tm = TaskManager()  # built-in index only
    written = {}
    for name, e in sorted(tm.task_index.items()):
        if e.kind is not Kind.TASK or not e.cfg or e.yaml_path is None:
            continue
        if "custom_dataset" in e.cfg:
            continue
        key = f"{e.cfg.get('dataset_path')}|{e.cfg.get('dataset_name')}"
        if key not in sources:
            continue
        files = {s: f for s, f in sources[key].items() if s not in EMPTY}
        empty = sorted(s for s in sources[key] if s in EMPTY)
        kw = yaml.safe_dump({"dataset_kwargs": {"data_files": files, "empty_splits": empty}}, sort_keys=False)
        p = out / f"{name}.yaml"
        p.write_text(f"include: {json.dumps(str(e.yaml_path))}\ntask: {name}\ntag: null\n"
                     f"custom_dataset: !function dq_offline.load\n{kw}")
        written[name] = key
    shutil.copy(Path(__file__).with_name('dq_offline.py'), out / 'dq_offline.py')
    return written


if __name__ == "__main__":
    data = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/research20/data")
    out = Path(sys.argv[2] if len(sys.argv) > 2 else "/tmp/research20/tasks")
    w = render(json.loads((data / "sources.json").read_text()), out)
    print(len(w), "task overrides written to", out)
    print(sorted(w)[:400])

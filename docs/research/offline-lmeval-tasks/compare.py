"""Request-equality check: lm-eval's ORIGINAL task (built-in TaskManager, hub dataset ids) vs the offline
override (include_path), on the same documents. The original's `datasets.load_dataset` is intercepted:
it must ask for exactly the (path, name) the override claims to replace, and gets the same local docs.
Compares every Instance (type, doc_id, idx, arguments, doc) and the task configs minus the data source.
"""
import json, os, sys, time
from unittest import mock
os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
import datasets
from lm_eval.tasks import TaskManager

DATA = "/tmp/research20/data"
sources = json.load(open(f"{DATA}/sources.json"))
sys.path.insert(0, "/tmp/research20/tasks")
from dq_offline import load as offline_load  # noqa: E402

EMPTY = {"train"}
asked = []


def fake_load_dataset(path=None, name=None, **kw):
    key = f"{path}|{name}"
    asked.append(key)
    assert key in sources, f"original task asked for {key}, which has no local data"
    files = {s: f for s, f in sources[key].items() if s not in EMPTY}
    return offline_load(files, [s for s in sources[key] if s in EMPTY])


def requests(tm, name, shots, limit):
    res = tm.load([name])
    out = {}
    for tname, task in sorted(res["tasks"].items()):
        if shots is not None:
            task.set_config("num_fewshot", shots)
        task.set_fewshot_seed(seed=1234)
        task.build_all_requests(limit=limit, rank=0, world_size=1)
        out[tname] = ([(i.request_type, i.doc_id, i.idx, i.arguments, json.dumps(i.doc, sort_keys=True, default=str))
                       for i in task.instances], task)
    return out


def cfg_minus_source(task):
    c = task.dump_config()
    for k in ("custom_dataset", "dataset_kwargs", "dataset_path", "dataset_name"):
        c.pop(k, None)
    c.get("metadata", {}).pop("config_source", None)
    return json.dumps(c, sort_keys=True, default=str)


orig_tm, off_tm = TaskManager(), TaskManager(include_path="/tmp/research20/tasks")
cases = [a.split(":") for a in sys.argv[1:]]  # name[:shots[:limit]]
ok = True
for case in cases:
    name = case[0]
    shots = int(case[1]) if len(case) > 1 and case[1] != "" else None
    limit = int(case[2]) if len(case) > 2 else None
    t0 = time.monotonic()
    asked.clear()
    try:
        with mock.patch.object(datasets, "load_dataset", fake_load_dataset):
            o = requests(orig_tm, name, shots, limit)
        f = requests(off_tm, name, shots, limit)
    except Exception as e:
        print(f"{name} shots={shots}: ERROR {type(e).__name__}: {str(e)[:200]}"); ok = False; continue
    same_tasks = sorted(o) == sorted(f)
    n = sum(len(v[0]) for v in o.values())
    diff = [t for t in o if o[t][0] != f.get(t, ([],))[0]]
    cfgdiff = [t for t in o if t in f and cfg_minus_source(o[t][1]) != cfg_minus_source(f[t][1])]
    src_ok = all(f[t][1].config.metadata["config_source"].startswith("/tmp/research20/tasks") for t in f)
    good = same_tasks and not diff and not cfgdiff and src_ok and n > 0
    ok &= good
    print(f"{name} shots={shots} limit={limit}: {len(o)} task(s), {n} requests, identical={not diff} "
          f"config-identical-but-source={not cfgdiff} offline-used={src_ok} hub ids asked={sorted(set(asked))[:2]}"
          f"{'...' if len(set(asked))>2 else ''} ({time.monotonic()-t0:.1f}s) {'OK' if good else 'MISMATCH ' + str(diff[:3] + cfgdiff[:3])}")
print("ALL OK" if ok else "SOME FAILED")

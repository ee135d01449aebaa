import os, sys, time
os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
t0 = time.monotonic()
from lm_eval.tasks import TaskManager
tm = TaskManager(include_path="/tmp/research20/tasks")
print(f"import+TaskManager(include_path) {time.monotonic()-t0:.1f}s", flush=True)
for spec in sys.argv[1:]:
    name, _, shots = spec.partition(":")
    t0 = time.monotonic()
    tasks = tm.load([name])["tasks"]
    t1 = time.monotonic()
    n = 0
    for t in tasks.values():
        if shots: t.set_config("num_fewshot", int(shots))
        t.build_all_requests(limit=None, rank=0, world_size=1); n += len(t.instances)
    print(f"{spec}: load {t1-t0:.1f}s, build {time.monotonic()-t1:.1f}s, {n} requests", flush=True)

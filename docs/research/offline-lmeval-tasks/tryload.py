import os, sys, time, logging
os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
from lm_eval.tasks import TaskManager
from lm_eval.api.group import Group

t0 = time.monotonic()
tm = TaskManager(include_path=sys.argv[1])
print(f"TaskManager index: {time.monotonic()-t0:.1f}s")
names = sys.argv[2].split(",")
for name in names:
    t0 = time.monotonic()
    try:
        res = tm.load([name])
    except Exception as e:
        print(f"== {name}: FAILED {type(e).__name__}: {str(e)[:300]}"); continue
    tasks = res["tasks"]
    dt = time.monotonic() - t0
    first = next(iter(tasks.values()))
    shots = int(sys.argv[3]) if len(sys.argv) > 3 else None
    if shots is not None:
        for t in tasks.values(): t.set_config("num_fewshot", shots)
    try:
        first.build_all_requests(limit=2, rank=0, world_size=1)
    except Exception as e:
        print(f"== {name}: build FAILED {type(e).__name__}: {e}"); continue
    inst = first.instances
    print(f"== {name}: {len(tasks)} task(s), groups={sorted(res.get('groups', {}))[:6]}, load {dt:.1f}s; "
          f"{first.task_name}: n_docs={len(first.eval_docs)} output_type={first.OUTPUT_TYPE} "
          f"fewshot_split={first.fewshot_cfg.split} num_fewshot={first.config.num_fewshot} "
          f"source={first.config.metadata.get('config_source')}")
    a = inst[0].args
    print("   ctx:", repr(a[0][-300:]))
    print("   arg1:", repr(a[1])[:200], "| n requests for 2 docs:", len(inst))

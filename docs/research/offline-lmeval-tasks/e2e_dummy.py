"""simple_evaluate end to end, offline, on the override tasks with lm-eval's `dummy` LM (random answers):
proves the stage's call path (task names, groups, num_fewshot, limit, filters, metrics) works offline."""
import os, time, json
os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
import lm_eval
from lm_eval.tasks import TaskManager
tm = TaskManager(include_path="/tmp/research20/tasks")
for name, shots, limit in [("arc_challenge", 0, 5), ("gsm8k", 0, 3), ("gsm8k_cot", None, 2), ("mmlu_stem", 5, 2),
                           ("winogrande", None, 5), ("lambada_openai", None, 5)]:
    t0 = time.monotonic()
    res = lm_eval.simple_evaluate(model="dummy", tasks=[name], num_fewshot=shots, limit=limit, task_manager=tm,
                                  log_samples=True, random_seed=0, numpy_random_seed=0, torch_random_seed=0,
                                  fewshot_random_seed=1234, bootstrap_iters=0)
    r = res["results"]
    print(f"{name} shots={shots} limit={limit} ({time.monotonic()-t0:.1f}s): results keys={list(r)[:4]} "
          f"{ {k: v for k, v in r[name].items() if k!='alias'} } n-samples={res['n-samples'].get(name) if name in res['n-samples'] else 'group'} "
          f"version={res['versions'].get(name)} hash={str(res.get('task_hashes', {}).get(name))[:12]} "
          f"n-shot={res.get('n-shot', {}).get(name)} lm_eval={res['config'].get('lm_eval_version', lm_eval.__version__ if hasattr(lm_eval,'__version__') else '')}")

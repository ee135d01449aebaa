"""Worker: lm-eval against a running OpenAI-compatible server (`local-completions`), one task at a time.

Input: a JSON config (lm-eval model name and args from the serving plugin, tasks with limit/few-shot,
include path, ...).
Output: a JSON of per-task metrics with stderr, sample counts and lm-eval's own versions, written
atomically; per-item samples to JSONL (for flip analysis). Loglikelihood needs the server's prompt
logprobs (`echo` + `logprobs`), which vLLM returns.

Progress: `_watch_requests` reports requests done/total per task and request type (harness/proc.py
WorkerProgress). lm-eval has no progress callback; the hook wraps the LM instance that simple_evaluate
hands to `lm_eval.evaluator.evaluate`: each request-type method gives the total (len(requests)), and the
LM's `cache_hook.add_partial`, which lm-eval's models (TemplateAPI, our llama.cpp LM) call once per
answered request, gives the count. If a later lm-eval moves either, only the live line is lost.
"""

from __future__ import annotations

import importlib
import json
import time
from pathlib import Path

from harness.proc import worker_main


def _clean(v):
    if isinstance(v, float) and v != v:  # NaN -> None for JSON consumers
        return None
    return v


REQUEST_TYPES = ("loglikelihood", "loglikelihood_rolling", "generate_until")


def _watch_requests(evaluator_module, task: str) -> None:
    """Make `evaluator_module.evaluate` report this task's requests done/total (see the module docstring)."""
    from harness.proc import WorkerProgress

    orig = getattr(evaluator_module, "_dq_orig_evaluate", None) or evaluator_module.evaluate
    evaluator_module._dq_orig_evaluate = orig

    def evaluate(*args, **kwargs):
        lm = kwargs.get("lm", args[0] if args else None)
        try:
            _instrument(lm, task, WorkerProgress)
        except Exception as exc:  # noqa: BLE001 - progress is best-effort
            print(f"progress: lm-eval hook not installed ({type(exc).__name__}: {exc})", flush=True)
        return orig(*args, **kwargs)

    evaluator_module.evaluate = evaluate


def _instrument(lm, task: str, progress_cls) -> None:
    state = {"reqtype": None, "done": 0, "report": None}
    hook = lm.cache_hook

    class CountingHook:
        def __getattr__(self, name):
            return getattr(hook, name)

        def add_partial(self, attr, req, res):
            hook.add_partial(attr, req, res)
            # inner calls (a rolling request's windows go through loglikelihood) are not counted
            if attr == state["reqtype"] and state["report"] is not None:
                state["done"] += 1
                state["report"].update(min(state["done"], state["report"].total or state["done"]))

    lm.cache_hook = CountingHook()
    for rt in REQUEST_TYPES:
        method = getattr(lm, rt, None)
        if method is None:
            continue

        def wrapped(requests, *a, _rt=rt, _m=method, **kw):
            outer = state["reqtype"] is None
            if outer:
                state.update(
                    reqtype=_rt, done=0, report=progress_cls(f"lm-eval {task} {_rt}", "requests", total=len(requests))
                )
                state["report"].update(0, force=True)
            try:
                res = _m(requests, *a, **kw)
                if outer:
                    state["report"].update(len(requests), force=True)
                return res
            finally:
                if outer:
                    state["reqtype"] = None

        setattr(lm, rt, wrapped)


def work(cfg: dict) -> dict:

    import lm_eval
    import lm_eval.evaluator
    from lm_eval.tasks import TaskManager

    tm = TaskManager(include_path=cfg["include_path"])
    if cfg.get("register"):  # a dqbench lm-eval model (in-process scoring) registers itself on import
        importlib.import_module(cfg["register"])
    # the serving plugin's arguments (where and how to score), then the evaluation spec's knobs
    model_args = {
        **cfg["model_args"],
        "max_length": cfg["max_length"],
        "batch_size": cfg["batch_size"],
        "seed": cfg["seed"],
        "num_concurrent": cfg["num_concurrent"],
    }
    samples_dir = Path(cfg["samples_dir"])
    samples_dir.mkdir(parents=True, exist_ok=True)
    out: dict = {"tasks": {}, "lm_eval_version": lm_eval.__version__ if hasattr(lm_eval, "__version__") else None}
    for t in cfg["tasks"]:
        t0 = time.monotonic()
        _watch_requests(lm_eval.evaluator, t["name"])
        res = lm_eval.simple_evaluate(
            model=cfg["lm"],
            model_args=model_args,
            tasks=[t["name"]],
            num_fewshot=t["num_fewshot"],
            limit=t["limit"],
            task_manager=tm,
            log_samples=True,
            random_seed=cfg["seed"],
            numpy_random_seed=cfg["seed"],
            torch_random_seed=cfg["seed"],
            fewshot_random_seed=cfg["seed"],
            apply_chat_template=False,
            bootstrap_iters=1000,
        )
        name = t["name"]
        raw = res["results"][name]
        metrics = {}
        for key, val in raw.items():
            if (
                key in ("alias", "name", "sample_len")
                or "_stderr," in key
                or isinstance(val, bool)
                or not isinstance(val, (int, float))
            ):
                continue  # lm-eval also reports the task name and sample count here
            metric, _, flt = key.partition(",")
            stderr = raw.get(f"{metric}_stderr,{flt}")
            metrics[metric] = {"value": _clean(val), "stderr": _clean(stderr) if stderr != "N/A" else None}
        n = res.get("n-samples", {}).get(name, {})
        with open(samples_dir / f"{name}.jsonl", "w") as f:
            for s in res.get("samples", {}).get(name, []):
                f.write(
                    json.dumps(
                        {
                            "doc_id": s.get("doc_id"),
                            "target": s.get("target"),
                            "filtered_resps": s.get("filtered_resps"),
                            **{m: s.get(m) for m in metrics if m in s},
                        },
                        default=str,
                    )
                    + "\n"
                )
        out["tasks"][name] = {
            "metrics": metrics,
            "n": n.get("effective"),
            "n_total": n.get("original"),
            "limit": t["limit"],
            "num_fewshot": t["num_fewshot"],
            "version": res.get("versions", {}).get(name),
            "lm_eval_task_hash": res.get("task_hashes", {}).get(name),
            "wall_s": time.monotonic() - t0,
        }
        print(f"{name}: {json.dumps(metrics)} ({time.monotonic() - t0:.1f} s)", flush=True)
    out["lm_eval_version"] = out["lm_eval_version"] or res.get("config", {}).get("lm_eval_version")
    return out


if __name__ == "__main__":
    worker_main(work, result="out")

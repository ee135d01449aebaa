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


def _metric_key(metric: str, flt: str) -> str:
    # lm-eval's own key without its default filter: "acc", "exact_match,strict-match"
    return metric if flt == "none" else f"{metric},{flt}"


def task_metrics(raw: dict) -> dict:
    """{metric key: {value, stderr}} from one row of lm-eval's `results`."""
    metrics = {}
    for key, val in raw.items():
        if (
            key in ("alias", "name", "sample_len", "sample_count")
            or "_stderr," in key
            or isinstance(val, bool)
            or not isinstance(val, (int, float))
        ):
            continue  # lm-eval also reports the task name and sample counts here
        metric, _, flt = key.partition(",")
        stderr = raw.get(f"{metric}_stderr,{flt}")
        metrics[_metric_key(metric, flt or "none")] = {
            "value": _clean(val),
            "stderr": _clean(stderr) if isinstance(stderr, (int, float)) else None,
        }
    return metrics


def sample_rows(samples: dict[str, list], name: str) -> list[dict]:
    """One row per (subtask, document): its per-item metric values, each filter's under its own key. A
    task with several filters (gsm8k: strict-match, flexible-extract) logs each document once per filter."""
    rows: dict[tuple[str, int], dict] = {}
    for leaf, items in sorted(samples.items()):
        for s in items:
            flt = s.get("filter", "none")
            row = rows.setdefault(
                (leaf, s.get("doc_id")),
                {
                    **({"task": leaf} if leaf != name else {}),
                    "doc_id": s.get("doc_id"),
                    "target": s.get("target"),
                    "filtered_resps": {},
                },
            )
            row["filtered_resps"][flt] = s.get("filtered_resps")
            for m in s.get("metrics") or []:
                if m in s:
                    row[_metric_key(m, flt)] = s[m]
    return list(rows.values())


def _weighted(leaf_metrics: dict[str, dict], counts: dict[str, int]) -> dict:
    """A tag's metrics (lm-eval reports none for a tag): each metric's document-weighted mean over the
    subtasks that have it; no stderr (the subtasks' are not combined here)."""
    out = {}
    keys = {k for m in leaf_metrics.values() for k in m}
    for k in sorted(keys):
        pairs = [(m[k]["value"], counts.get(t, 0)) for t, m in leaf_metrics.items() if k in m]
        total = sum(n for v, n in pairs if v is not None)
        if total:
            out[k] = {"value": sum(v * n for v, n in pairs if v is not None) / total, "stderr": None}
    return out


def render_offline(cfg: dict, workdir: Path) -> str | None:
    """lm-eval's own configs of the offline tasks, data redirected (harness/evaluate/overrides.py)."""
    off = cfg.get("offline_leaves") or {}
    if not off:
        return None
    import lm_eval

    from harness.evaluate.overrides import render

    root = Path(lm_eval.__file__).parent / "tasks"
    return str(render(off, root, Path(cfg["data_dir"]), workdir / "lmeval-tasks"))


def work(cfg: dict) -> dict:

    import lm_eval
    import lm_eval.evaluator

    from harness.evaluate.task_index import task_manager

    samples_dir = Path(cfg["samples_dir"])
    samples_dir.mkdir(parents=True, exist_ok=True)
    include = [cfg["include_path"], render_offline(cfg, samples_dir.parent)]
    # lm-eval's own task folder indexed once, not in every cell (harness/evaluate/task_index.py)
    tm = task_manager([p for p in include if p], Path(cfg["index_cache"]) if cfg.get("index_cache") else None)
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
    out: dict = {"tasks": {}, "lm_eval_version": getattr(lm_eval, "__version__", None)}
    for t in cfg["tasks"]:
        t0 = time.monotonic()
        name = t["name"]
        _watch_requests(lm_eval.evaluator, name)
        res = lm_eval.simple_evaluate(
            model=cfg["lm"],
            model_args=model_args,
            tasks=[name],
            num_fewshot=t["num_fewshot"],
            limit=t["limit"],
            task_manager=tm,
            log_samples=True,
            random_seed=cfg["seed"],
            numpy_random_seed=cfg["seed"],
            torch_random_seed=cfg["seed"],
            fewshot_random_seed=cfg["seed"],
            apply_chat_template=cfg.get("apply_chat_template", False),
            fewshot_as_multiturn=cfg.get("fewshot_as_multiturn", False),
            system_instruction=cfg.get("system_instruction"),
            gen_kwargs=cfg.get("gen_kwargs") or None,
            bootstrap_iters=1000,
        )
        samples = res.get("samples", {})
        leaves = sorted(samples) or [name]
        n_samples = res.get("n-samples", {})
        counts = {leaf: int((n_samples.get(leaf) or {}).get("effective") or 0) for leaf in leaves}
        leaf_metrics = {leaf: task_metrics(res["results"].get(leaf, {})) for leaf in leaves}
        # a group has its own aggregate row (mmlu: acc weighted by size); a tag has none
        metrics = task_metrics(res["results"][name]) if name in res["results"] else _weighted(leaf_metrics, counts)
        shots = {res.get("n-shot", {}).get(leaf) for leaf in leaves}
        rows = sample_rows(samples, name)
        with open(samples_dir / f"{name}.jsonl", "w") as f:
            for row in rows:
                f.write(json.dumps(row, default=str) + "\n")
        out["tasks"][name] = {
            "metrics": metrics,
            "n": sum(counts.values()),
            "n_total": sum(int((n_samples.get(leaf) or {}).get("original") or 0) for leaf in leaves),
            "limit": t["limit"],
            "num_fewshot": shots.pop() if len(shots) == 1 else None,  # the effective count lm-eval used
            "version": res.get("versions", {}).get(name),
            "lm_eval_task_hash": (res.get("task_hashes") or {}).get(name),
            "subtasks": {leaf: {k: v["value"] for k, v in m.items()} for leaf, m in leaf_metrics.items()}
            if leaves != [name]
            else {},
            "gen_kwargs": cfg.get("gen_kwargs") or None,
            "wall_s": time.monotonic() - t0,
        }
        print(f"{name}: {json.dumps(metrics)} ({time.monotonic() - t0:.1f} s)", flush=True)
    out["lm_eval_version"] = out["lm_eval_version"] or res.get("config", {}).get("lm_eval_version")
    return out


if __name__ == "__main__":
    worker_main(work, result="out")

"""What the lm-eval worker (harness/evaluate/lmeval_worker.py) changes in lm-eval's own code, to take out work
whose result dqbench never reads or that lm-eval repeats with the same result. Nothing here changes a prompt, a
request or a score (but see the exception below). Installed once per worker process (`install`), before any
task is built.

Found by profiling the worker on the default matrix's fixed tasks (docs/results/2026-12-07-avx2-fresh-host.md,
section 10):

- `docs_once`: lm-eval 0.4.13's `ConfigurableTask.validation_docs` / `test_docs` run the task's `process_docs`
  over the whole split on every call, and one `simple_evaluate` calls them 4-5 times (requests built, results
  collected, samples logged). For HellaSwag that is a `datasets.map` over 10,042 documents, 2.9 s each on a
  2-core host, for 20 scored items. The split is the same every time: it is processed once per task object.
  (The sequential path already reads its documents once: harness/evaluate/sequential.configure.) One exception
  to "the same every time": a process_docs that draws from the global random generator (gpqa shuffles each
  question's choices) can give another split on every call (where `datasets` does not serve the map from its
  cache), so as installed the requests can be built from one shuffle and scored against another's gold index
  (lm_eval/evaluator.py reads the documents again to score). Processed once, both read the same split.
- `no_env_info`: every `simple_evaluate` ends with `add_env_info`, which runs torch's `collect_env` (subprocesses:
  `pip list`, `conda list`, `nvidia-smi`, ...): 1.3 s per task on that host. Its text lands in lm-eval's
  results dict, which the worker does not keep; a stored result carries its host block and lm-eval's version
  (harness/result.py).
- `templates_once`: lm-eval's `utils.apply_template` compiles its Jinja template on every call (Jinja caches
  `get_template` by name, not `from_string`): once per prompt, target and choice list of every document, and
  again at every look of a sequential evaluation. 556 compilations, 0.9 s of the worker's 2.3 s of its own CPU
  time in bench/eval_efficiency.py's tasks (cProfile, AVX2 host, 2026-12-08), on a 2-core host taken from the
  server it waits for. A template's text compiles to the same template every time: compiled once per text
  (lm-eval's own environment, filters and undefined-variable rule), rendered per document as before.
"""

from __future__ import annotations

import functools
from typing import Any

_DOC_SPLITS = ("validation_docs", "test_docs")


def docs_once(task_cls: Any) -> bool:
    """Memoise `task_cls`'s evaluation splits per task object; False where lm-eval no longer has them (then it
    runs as it is)."""
    if getattr(task_cls, "_dq_docs_once", False):
        return True
    if not all(callable(getattr(task_cls, split, None)) for split in _DOC_SPLITS):
        return False
    for split in _DOC_SPLITS:
        processed = getattr(task_cls, split)

        @functools.wraps(processed)  # `__wrapped__`: lm-eval's own method, for a test to compare against
        def once(self: Any, _processed: Any = processed, _key: str = f"_dq_{split}") -> Any:
            memo = self.__dict__.get(_key)
            if memo is None:
                memo = self.__dict__[_key] = (_processed(self),)  # a tuple: a split may legitimately be None
            return memo[0]

        setattr(task_cls, split, once)
    task_cls._dq_docs_once = True
    return True


def no_env_info(storage: dict[str, Any]) -> None:
    """In place of lm-eval's `add_env_info` (see the module docstring): says where the environment is instead."""
    storage["pretty_env_info"] = "not collected by dqbench's worker: see the stored result's host block"


_TEMPLATES_KEPT = 4096  # distinct template texts kept compiled (a suite has a few per task)


def templates_once(utils: Any) -> bool:
    """Make `utils.apply_template` (lm-eval's module `lm_eval.utils`) compile each template text once; False
    where lm-eval no longer has it or its environment (then it runs as it is)."""
    apply = getattr(utils, "apply_template", None)
    from_string = getattr(getattr(utils, "env", None), "from_string", None)
    if not callable(apply) or not callable(from_string):
        return False
    if getattr(apply, "_dq_templates_once", False):
        return True
    compiled = functools.lru_cache(maxsize=_TEMPLATES_KEPT)(from_string)

    @functools.wraps(apply)  # `__wrapped__`: lm-eval's own function, for a test to compare against
    def once(template: str, doc: dict) -> str:
        return compiled(template).render(**doc)

    once._dq_templates_once = True  # type: ignore[attr-defined]
    utils.apply_template = once
    return True


def install() -> list[str]:
    """Apply the changes to the imported lm-eval; returns the names of those applied."""
    import lm_eval.api.task
    import lm_eval.evaluator
    import lm_eval.utils

    done = []
    if docs_once(lm_eval.api.task.ConfigurableTask):
        done.append("docs_once")
    if hasattr(lm_eval.evaluator, "add_env_info"):
        lm_eval.evaluator.add_env_info = no_env_info
        done.append("no_env_info")
    if templates_once(lm_eval.utils):
        done.append("templates_once")
    return done

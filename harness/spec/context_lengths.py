"""Context lengths of a long-context task (`evaluation.tasks[*].context_lengths`): which tasks take them, how a
per-length task is named in results (`dq_niah@4096`), and the spec-level checks. Pure: no I/O, no heavy imports;
the spec (harness/spec/evaluation.py), the plan (harness/plan/context_lengths.py), the evaluate worker
(harness/evaluate/niah.py) and the dashboard read the same names.

A task with context lengths is scored once per length, each length a task of its own in the result
(`quality.tasks["dq_niah@4096"]`), so per-item scores, flips and paired CIs against the reference work per
length unchanged (harness/evaluate/reference.py pairs items by task name and document id).
"""

from __future__ import annotations

import re
from typing import Any

# dqbench's needle-in-a-haystack task (harness/evaluate/niah.py): its haystack is generated from packaged text
# (CPython's pydoc topics) and sized with the cell's own tokenizer, so it runs offline. lm-eval's RULER niah_*
# tasks do not here: their prepare_niah module imports `wonderwords` (not installed) and downloads nltk's
# punkt_tab at import time, and niah_single_2/3, multikey_1, multivalue and multiquery read Paul Graham's essays
# from the hub.
LENGTH_TASKS = ("dq_niah",)
SEP = "@"
MIN_LENGTH = 256  # the instruction, the needle, the question and the answer budget need ~100 tokens
_KEY = re.compile(rf"^(?P<base>.+){SEP}(?P<length>[0-9]+)$")


def length_task(name: str, length: int) -> str:
    """The result's task key of `name` scored at `length` tokens: `dq_niah@4096`."""
    return f"{name}{SEP}{length}"


def split_length_task(key: str) -> tuple[str, int | None]:
    """(`dq_niah`, 4096) for `dq_niah@4096`; (key, None) for a task without a length."""
    m = _KEY.match(key)
    return (m["base"], int(m["length"])) if m else (key, None)


def expand(task: Any) -> list[tuple[str, Any]]:
    """(result key, the task) per length of a task with context lengths, else [(its name, it)]."""
    lengths = getattr(task, "context_lengths", None)
    if not lengths:
        return [(task.name, task)]
    return [(length_task(task.name, n), task) for n in lengths]


def task_problems(name: str, lengths: list[int] | None) -> list[str]:
    """What is wrong with one task's `context_lengths` (field, value, fix)."""
    where = f"evaluation.tasks[{name}].context_lengths"
    if name in LENGTH_TASKS and not lengths:
        return [
            f"evaluation.tasks[{name}]: a long-context task is scored per context length and names none: add "
            f"`context_lengths: [1024, 2048, 4096]` (tokens, at most serving.max_model_len)"
        ]
    if lengths is None:
        return []
    if name not in LENGTH_TASKS:
        return [
            f"{where}: {lengths}: only {', '.join(LENGTH_TASKS)} is sized per context length (lm-eval's RULER niah_* "
            f"tasks need `wonderwords`, nltk's punkt_tab download and, most, the hub): remove context_lengths "
            f"from {name!r} or use {{name: dq_niah, context_lengths: {lengths}}}"
        ]
    out = []
    short = [n for n in lengths if n < MIN_LENGTH]
    if short:
        out.append(f"{where}: {short} below {MIN_LENGTH} tokens leave no room for the haystack: use >= {MIN_LENGTH}")
    dup = sorted({n for n in lengths if lengths.count(n) > 1})
    if dup:
        out.append(f"{where}: {dup} listed twice: list each length once")
    return out


def max_length_problems(tasks: list[Any], max_length: int) -> list[str]:
    """A length over `evaluation.max_length`: lm-eval left-truncates a prompt to its max_length, so the needle
    could be cut off and the length would not be the one reported."""
    out = []
    for t in tasks:
        over = [n for n in getattr(t, "context_lengths", None) or [] if n > max_length]
        if over:
            out.append(
                f"evaluation.tasks[{t.name}].context_lengths: {over} exceed evaluation.max_length {max_length} "
                f"(lm-eval would truncate those prompts): raise evaluation.max_length to >= {max(over)} (and "
                f"serving.max_model_len above it) or drop those lengths"
            )
    return out


def longest(tasks: list[Any]) -> tuple[str, int] | None:
    """(task name, its longest context length) over `tasks`, None when no task has lengths."""
    pairs = [(t.name, max(t.context_lengths)) for t in tasks if getattr(t, "context_lengths", None)]
    return max(pairs, key=lambda x: x[1], default=None)

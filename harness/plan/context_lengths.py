"""The plan's check of long-context tasks against the servers that run them: a context length over the
`max_model_len` of a serving entry some cell of the matrix uses is one matrix-wide error, before anything is
prepared or loaded (the server would refuse every request of that length; RULER-style scores need the whole
prompt and answer inside the window); so is such a task in the `decide:` measure. Pure: reads the matrix only."""

from __future__ import annotations

from typing import Any

from harness.plan.rules import engine_for
from harness.spec.context_lengths import longest


def engines(m: Any) -> list[str]:
    """The engines the matrix's cells are served on: each method of the method axis (and of the students'
    lists), `none` on the reference engine."""
    names = [*m.axes.method, *(x for s in m.students for x in getattr(s, "methods", []) or [])]
    used = [x for x in names if x == "none" or x in m.methods]
    return sorted({engine_for(m.methods[x] if x != "none" else None) for x in used})


def plan_problems(m: Any) -> list[str]:
    """Every matrix-wide problem of its long-context tasks: the serving windows, and the `decide:` measure."""
    return serving_problems(m) + decide_problems(m)


def decide_problems(m: Any) -> list[str]:
    """A long-context task in the `decide:` measure: it is scored once per length, never item by item as one task
    (harness/evaluate/sequential.py), so it cannot be part of the sequential measure."""
    if getattr(m, "decide", None) is None:
        return []
    from harness.decide.question import measure_tasks

    measured = set(measure_tasks(m.evaluation, m.decide))
    return [
        f"decide.measure: {t.name!r} is scored once per context length ({', '.join(map(str, t.context_lengths))}) and "
        f"cannot be measured sequentially: leave it out of the measure (`measure: {{tasks: [...]}}` naming the "
        f"other tasks)"
        for t in m.evaluation.tasks
        if t.context_lengths and t.name in measured
    ]


def serving_problems(m: Any) -> list[str]:
    """Each serving entry (by the engines the cells use) whose max_model_len is below the longest context length."""
    top = longest(getattr(m.evaluation, "tasks", []))
    if top is None:
        return []
    name, length = top
    out = []
    for engine in engines(m):
        serving = m.serving_for(engine)
        ctx = getattr(serving, "max_model_len", None)
        if ctx is not None and length > ctx:
            out.append(
                f"evaluation.tasks[{name}].context_lengths: {length} exceeds max_model_len {ctx} of the "
                f"`kind: {engine}` serving entry (a context length counts prompt and answer, and the server "
                f"refuses longer requests): raise that max_model_len to >= {length} (at most the model's "
                f"window) or drop the lengths above {ctx}"
            )
    return out

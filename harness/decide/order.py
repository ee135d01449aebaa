"""The order items are scored in: a fixed seeded random permutation of each task's documents, the same for a cell
and its reference, on every host and in every run, so that items scored once are reused and paired; and, for a
measure of several tasks, the sequence that interleaves them (`item_sequence`).

Not the first N documents: lm-eval's test splits are often sorted (by source, by length, by subject), and a
sequential procedure that stops early must see a random sample of the task from its first look on.

A task is either one lm-eval task (its keys are plain document indices) or a group or tag (`mmlu`, `ai2_arc`):
its population is every (subtask, document) pair, shuffled together, so that a prefix of the order is a
uniform sample of the group's documents and the mean over it is the group's size-weighted mean. A task's
`limit` keeps its meaning: the first `limit` documents of each subtask are the population (the documents a
fixed-size run scores, and the ones the plan's contamination checks reason about), shuffled.

The sequence of a measure: at each step a task is drawn uniformly at random (seeded by the decide seed and the
measured tasks), and its next document in its own order is the step's item. Each step is then an independent
draw whose expected drop is the mean of the tasks' drops (the advisor's `avg_acc` weighs tasks equally), and
every item is a step of its own: the confidence sequence counts steps, so interleaving single items tightens it
several-fold over rounds that average one item of every task (a round's mean has the same range [-1, 1] with a
smaller spread, which bounded bets cannot use: harness/decide/confseq.py). The sequence ends at the budget or at
the first step whose task has no document left.

Pure (numpy only): the evaluate worker builds the order from the document counts lm-eval reports, and
bench/sequential.py rebuilds it from the stored items.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np

# (subtask, document index): subtask None for a task that is its own leaf. The result's Item.key is the same
# fact as a string ("<subtask>:<doc>" or the plain doc id): `item_key` converts.
ItemKey = tuple[str | None, int]
Step = tuple[str, ItemKey]  # (measured task, its item)


def _task_seed(task: str) -> int:
    """A stable number per task name (Python's hash() of a str changes per process)."""
    return int.from_bytes(hashlib.sha256(task.encode()).digest()[:8], "little")


def task_order(task: str, leaves: Sequence[tuple[str, int]], seed: int, limit: int | None = None) -> list[ItemKey]:
    """The scoring order of `task`'s documents.

    leaves: (subtask name, documents) of each subtask, or one entry named `task` for a plain task (whose keys
    then carry subtask None); seed: `decide.seed`; limit: the task's `limit` (its first documents per subtask
    are the population)."""
    single = len(leaves) == 1 and leaves[0][0] == task
    names = sorted(name for name, _ in leaves)
    sizes = {name: min(n, limit) if limit is not None else n for name, n in leaves}
    offsets = np.cumsum([0] + [sizes[n] for n in names])
    rng = np.random.default_rng([seed, _task_seed(task)])
    perm = rng.permutation(int(offsets[-1]))
    which = np.searchsorted(offsets, perm, side="right") - 1  # the subtask of each drawn pair
    return [
        (None if single else names[w], flat - int(offsets[w]))
        for flat, w in zip(perm.tolist(), which.tolist(), strict=True)
    ]


def item_key(key: ItemKey) -> int | str:
    """The result's item key (harness/result.Item.key) of an order key."""
    sub, doc = key
    return doc if sub is None else f"{sub}:{doc}"


def parse_item_key(key: int | str) -> ItemKey:
    """An order key from the result's item key."""
    if isinstance(key, int):
        return (None, key)
    sub, _, doc = str(key).rpartition(":")
    return (sub or None, int(doc))


def item_sequence(orders: Mapping[str, Sequence[ItemKey]], seed: int, budget: int) -> list[Step]:
    """The measure's items in scoring order (see the module docstring): at most `budget` steps, fewer when a
    drawn task has run out of documents."""
    tasks = sorted(orders)
    if not tasks or budget <= 0:
        return []
    rng = np.random.default_rng([seed, _task_seed("sequence|" + "|".join(tasks))])
    taken = dict.fromkeys(tasks, 0)
    out: list[Step] = []
    for i in rng.integers(0, len(tasks), size=budget).tolist():
        t = tasks[i]
        if taken[t] >= len(orders[t]):
            break
        out.append((t, orders[t][taken[t]]))
        taken[t] += 1
    return out

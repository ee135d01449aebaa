"""Benchmark: the sequential evaluation on real cells (issue #29 item 5): how often its verdict agrees with the verdict
from all items, at what share of the items and of the evaluation's wall time.

For every done cell of the given results folders with a reference (the root of its lineage) measured on the same
host, and for each limit (relative drops of the aggregate measure: the mean over the tasks both scored of each
task's primary per-item metric, the advisor's default):
- **all items**: the fixed-n verdict a run that scores every planned item gives: the paired bootstrap 95 % interval
  of the relative drop over all items both scored, stratified by task (the advisor's interval before sequential
  evaluation, harness/evaluate/reference.py); and, as a consistency check, the confidence sequence over all the
  sequence's items;
- **sequential**: the same stored items replayed in the seeded sequence (harness/decide/order.py; for a fixed-n
  cell, each task's items both scored shuffled with the same seed, interleaved by the seeded draw of tasks, until
  a task runs out) through harness/decide/sequential.replay with `--method` (default: the group-sequential
  design, planned for all the items a full run scores: every item both scored for a fixed-n cell, the budget for
  a sequential one), looking every `--batch` items and stopping at the first decided or futile look. The other
  method's figures are printed below the table for comparison.
Agreement: both verdicts equal (within / beyond / undecided). Items used: the items the sequential verdict used
over the items a full run scores. A sequential cell whose real run stopped early (a verdict after 50 items) has
no stored items past its stop: where the replay at another limit needs them, the pair is *not replayable* and is
counted apart, not as agreeing. The all-items data proper is a fixed-n run (bench/fixed_items.yaml: the default
matrix without `decide:`, 100 items of each measured task in every cell). Wall time implied: items x the cell's
per-item time (a sequential run's lm-eval time per scored item; a fixed-n cell's evaluate step's wall time over
its items, set-up included: an upper bound).

With `--oracle`: a bound on what any stopping rule on the same design (its looks, its intervals) could do on
these pairs, given the all-items verdict it cannot know: it stops a pair that all items leave undecided at its
first look, a pair they decide at the first look where the design's interval (without futility stops) gives the
same verdict, and a pair it cannot agree on at its first look. Its agreement is the most, and its items the
fewest at that agreement, that a futility rule (or any other stopping rule on these intervals) can reach.

With `--real` (the default run's folder, a matrix with `decide:`): each stored sequential decision is replayed from
its stored items and its reference's item journal in the worker's own order, and must come out the same (verdict
and items): replay == real.

    ./dq python bench/sequential.py RESULTS_DIR [RESULTS_DIR ...] [--limits 2 5 10 20] [--batch 50]
        [--method group-sequential|confidence-sequence] [--tasks T ...] [--real DIR] [--gamma G] [--futility P]
        [--oracle]

Prints the host (CPU model, ISA) and the load average: figures from a busy host are upper bounds of wall time.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.decide.journal import journal_path  # noqa: E402
from harness.decide.order import ItemKey, item_sequence, parse_item_key, task_order  # noqa: E402
from harness.decide.question import method_of  # noqa: E402
from harness.decide.sequential import interval, paired_items, replay  # noqa: E402
from harness.result import CellResult  # noqa: E402
from harness.result_facts import primary_metric  # noqa: E402
from harness.store.results import parse  # noqa: E402

ALPHA = 0.05
GOAL_AGREE, GOAL_ITEMS = 0.95, 0.40


def load(folder: Path) -> dict[tuple[str, str], CellResult]:
    out = {}
    for p in sorted((folder / "cells").glob("*.json")):
        r = parse(json.loads(p.read_text()))
        if r.done:
            out[(r.cell_id, r.host_id)] = r
    return out


def root_of(r: CellResult) -> str | None:
    plan = r.plan or {}
    return plan.get("teacher_id") or plan.get("parent_id")


def measure_items(r: CellResult) -> dict[str, dict[ItemKey, float]]:
    """task -> item key -> its primary per-item score (tasks with one only)."""
    out = {}
    for task, t in (r.quality.tasks if r.quality else {}).items():
        m = primary_metric(task)
        scores = t.item_scores(m) if m else {}
        if scores:
            out[task] = {parse_item_key(k): v for k, v in scores.items()}
    return out


def fixed_n(ref: dict, cell: dict, tasks: list[str], iters: int = 2000) -> tuple[float, float, float, int]:
    """(relative drop, lo, hi, items) over every item both scored: stratified paired bootstrap of the ratio."""
    rng = np.random.default_rng(0)
    a = {t: np.array([ref[t][k] for k in sorted(set(ref[t]) & set(cell[t]), key=str)]) for t in tasks}
    b = {t: np.array([cell[t][k] for k in sorted(set(ref[t]) & set(cell[t]), key=str)]) for t in tasks}
    ra, rb = np.mean([a[t].mean() for t in tasks]), np.mean([b[t].mean() for t in tasks])
    stats = np.zeros(iters)
    refs = np.zeros(iters)
    for t in tasks:
        idx = rng.integers(0, len(a[t]), size=(iters, len(a[t])))
        refs += a[t][idx].mean(1)
        stats += a[t][idx].mean(1) - b[t][idx].mean(1)
    rel = stats / np.where(refs > 0, refs, np.nan)
    lo, hi = np.nanquantile(rel, [0.025, 0.975])
    return float((ra - rb) / ra), float(lo), float(hi), sum(len(a[t]) for t in tasks)


def verdict(lo: float | None, hi: float | None, limit: float) -> str:
    if lo is None or hi is None:
        return "undecided"
    return "within" if hi <= limit + 1e-12 else "beyond" if lo > limit + 1e-12 else "undecided"


def shuffled(ref: dict, cell: dict, tasks: list[str], seed: int = 0) -> dict[str, list[ItemKey]]:
    """The items both scored, per task, in a seeded order (a fixed-n cell's items as the sequential run would
    draw them: the task's keys permuted as harness/decide/order.py permutes a population)."""
    out = {}
    for t in tasks:
        keys = sorted(set(ref[t]) & set(cell[t]), key=str)
        perm = task_order(t, [(t, len(keys))], seed)
        out[t] = [keys[d] for _, d in perm]
    return out


def worker_sequence(r: CellResult, tasks: list[str]) -> list | None:
    """The item sequence the evaluate worker drew for a sequentially evaluated cell (plain tasks: their size and
    limit are in the result), or None (a fixed-n cell, or a group whose subtask sizes the result lacks)."""
    dec = r.quality.decision if r.quality else None
    if dec is None or set(dec.tasks) != set(tasks):
        return None
    orders = {}
    for task in tasks:
        t = r.quality.tasks[task]
        if t.subtasks or not t.n_total:
            return None
        orders[task] = task_order(task, [(task, int(t.n_total))], dec.seed, t.limit)
    return item_sequence(orders, dec.seed, dec.max_items)


def per_item_s(r: CellResult) -> float | None:
    """Seconds per item: a sequential run's measured lm-eval time per scored item, else the evaluate step's wall
    time over the items it scored (lm-eval's set-up included: an upper bound)."""
    dec = r.quality.decision if r.quality else None
    if dec is not None and dec.item_s:
        return dec.item_s
    items = sum(t.n or 0 for t in (r.quality.tasks.values() if r.quality else []))
    wall = r.timings.get("evaluate")
    return wall / items if wall and items else None


def bench(
    folders: list[Path], limits: list[float], batch: int, method: str, only: list[str] | None = None
) -> list[dict]:
    rows = []
    for folder in folders:
        results = load(folder)
        for (cid, host), r in results.items():
            ref_id = root_of(r)
            ref = results.get((ref_id, host)) if ref_id else None
            if ref is None:
                continue
            a, b = measure_items(ref), measure_items(r)
            tasks = sorted(set(a) & set(b))
            dec = r.quality.decision if r.quality else None
            if dec is not None and dec.tasks:  # a sequential cell: its question's measure, not every task
                tasks = [t for t in tasks if t in dec.tasks]
            if only:  # the measure named on the command line (a fixed-n cell has no question)
                tasks = [t for t in tasks if t in only]
            if not tasks:
                continue
            sequence = worker_sequence(r, tasks)  # a sequential run's own order, else the items both scored shuffled
            if sequence is None:
                orders = shuffled(a, b, tasks)
                sequence = item_sequence(orders, 0, sum(len(o) for o in orders.values()))
            d, w = paired_items(sequence, b, a, relative=True)
            point, flo, fhi, n_all = fixed_n(a, b, tasks)
            planned = max(dec.max_items, len(d)) if dec is not None else len(d)  # what a full run scores
            sec = per_item_s(r)
            for lim in limits:
                seq = replay(
                    d,
                    w,
                    ALPHA,
                    lim,
                    batch,
                    len(d),
                    exhausted="population",
                    method=method,
                    planned=planned,  # type: ignore[arg-type]
                )
                cs_all = interval(d, w, ALPHA, lim)
                used = seq.items
                rows.append(
                    {
                        "folder": folder.name,
                        "cell": cid,
                        "label": r.label,
                        "limit": lim,
                        "tasks": len(tasks),
                        "sequence": len(d),
                        "items_all": n_all,
                        "drop_all": point,
                        "fixed_n": verdict(flo, fhi, lim),
                        "fixed_ci": (flo, fhi),
                        "cs_all": cs_all.verdict(lim),
                        "sequential": seq.verdict,
                        "items_used": used,
                        "planned": planned,
                        # the stored items ended before the design did, undecided: the real run would go on
                        "replayable": not (seq.stop == "population" and len(d) < planned),
                        "share": used / planned if planned else None,
                        "s_all": sec * planned if sec else None,
                        "s_used": sec * used if sec else None,
                    }
                )
    return rows


def stored_items(folder: Path, host: str, r: CellResult) -> tuple[dict, dict, dict]:
    """A sequential cell's measured tasks: each task's seeded document order, the cell's stored item scores and
    its reference's (from the reference's item journal on `host`), as the worker paired them."""
    dec = r.quality.decision  # type: ignore[union-attr]  # callers pass cells with a decision
    ref_dir = folder / "work" / dec.reference / host / "items"  # type: ignore[union-attr, operator]
    orders, mine, theirs = {}, {}, {}
    for task, metric in dec.tasks.items():  # type: ignore[union-attr]
        t = r.quality.tasks[task]  # type: ignore[union-attr]
        rows = [json.loads(x) for x in journal_path(ref_dir, task).read_text().splitlines()[1:] if x.strip()]
        theirs[task] = {(x.get("task"), int(x["doc_id"])): float(x[metric]) for x in rows if metric in x}
        mine[task] = {parse_item_key(k): v for k, v in t.item_scores(metric).items()}
        n_docs = int(t.n_total or 0)
        orders[task] = task_order(task, [(task, n_docs)], dec.seed, t.limit)  # type: ignore[union-attr]  # plain tasks
    return orders, mine, theirs


def real_vs_replay(folder: Path) -> list[str]:
    """Each stored sequential decision against its replay from the stored items (replay == real)."""
    lines = []
    results = load(folder)
    for (cid, host), r in results.items():
        dec = r.quality.decision if r.quality else None
        if dec is None or dec.reference is None or dec.stop == "skipped":
            continue
        orders, mine, theirs = stored_items(folder, host, r)
        sequence = item_sequence(orders, dec.seed, dec.max_items)
        d, w = paired_items(sequence, mine, theirs, dec.relative)
        exhausted = dec.stop if dec.stop not in ("within", "beyond") else "budget"
        out = replay(
            d,
            w,
            dec.error_rate,
            dec.limit,
            dec.batch_items,
            min(dec.items_used, len(d)),
            exhausted,  # type: ignore[arg-type]
            method=method_of(dec.method),  # type: ignore[arg-type]
            planned=len(sequence),
        )
        same = (out.verdict, out.items) == (dec.verdict, dec.items_used)
        lines.append(
            f"{'SAME' if same else 'DIFFERENT'}  {r.label} [{cid}]: real {dec.verdict} after {dec.items_used} items "
            f"(stop {dec.stop}); replay {out.verdict} after {out.items} items"
        )
    return lines


def host_words() -> str:
    from harness.hw.probe import host_line

    return host_line()  # the host's id, CPU model, ISA and load average


def summary(rows: list[dict]) -> dict:
    """Agreement and items over the replayable pairs; the pairs that are not, counted."""
    ok = [x for x in rows if x["replayable"]]
    decided = [x for x in ok if x["fixed_n"] != "undecided"]
    secs = [(x["s_used"], x["s_all"]) for x in ok if x["s_all"]]
    return {
        "pairs": len(ok),
        "not_replayable": len(rows) - len(ok),
        "agree": float(np.mean([x["sequential"] == x["fixed_n"] for x in ok])) if ok else float("nan"),
        "agree_decided": float(np.mean([x["sequential"] == x["fixed_n"] for x in decided]))
        if decided
        else float("nan"),
        "contradictions": sum(
            x["sequential"] != "undecided" and x["fixed_n"] != "undecided" and x["sequential"] != x["fixed_n"]
            for x in ok
        ),
        "share": sum(x["items_used"] for x in ok) / sum(x["planned"] for x in ok) if ok else float("nan"),
        "time": sum(u for u, _ in secs) / sum(v for _, v in secs) if secs else None,
    }


def summary_line(s: dict) -> str:
    return (
        f"{s['pairs']} (cell, limit) pairs: agreement with the all-items verdict {s['agree']:.1%} "
        f"({s['agree_decided']:.1%} where all items decide, {s['contradictions']} contradictions); items used "
        f"{s['share']:.1%} of a full run's"
        + (f"; evaluation time implied {s['time']:.1%}" if s["time"] is not None else "")
        + (f"; {s['not_replayable']} pair(s) not replayable (left out)" if s["not_replayable"] else "")
    )


def oracle(rows: list[dict], without_futility: list[dict], batch: int) -> dict:
    """The `--oracle` bound (module docstring): `without_futility` are the same pairs replayed with no futility
    stop, so each stops at its design's first decided look or at its end."""
    ok = [(x, y) for x, y in zip(rows, without_futility, strict=True) if x["replayable"]]
    agree, used = [], []
    for x, y in ok:
        if x["fixed_n"] == "undecided":
            agree.append(True)
            used.append(min(batch, x["planned"]))
        elif y["sequential"] == x["fixed_n"]:
            agree.append(True)
            used.append(y["items_used"])
        else:  # no stopping rule on these intervals gives the all-items verdict: stop at once
            agree.append(False)
            used.append(min(batch, x["planned"]))
    planned = sum(x["planned"] for x, _ in ok)
    return {
        "pairs": len(ok),
        "agree": float(np.mean(agree)) if ok else float("nan"),
        "share": sum(used) / planned if planned else float("nan"),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="*", type=Path, help="results folders (DQBENCH_RESULTS of finished runs)")
    ap.add_argument("--limits", nargs="+", type=float, default=[2, 5, 10, 20], help="relative limits in %%")
    ap.add_argument("--batch", type=int, default=50, help="items per look")
    ap.add_argument("--method", choices=["group-sequential", "confidence-sequence"], default="group-sequential")
    ap.add_argument("--real", type=Path, help="a results folder of a sequential run: replay == real")
    ap.add_argument("--tasks", nargs="+", help="the measure's tasks (default: a sequential cell's, else every task)")
    ap.add_argument("--gamma", type=float, help="the group-sequential design's spending gamma (default: dqbench's)")
    ap.add_argument("--futility", type=float, help="its futility threshold on conditional power (default: dqbench's)")
    ap.add_argument("--oracle", action="store_true", help="also the bound any stopping rule on this design meets")
    a = ap.parse_args()
    print("# bench/sequential.py\n" + host_words())
    # what-if designs (docs/results/2026-12-07-default-time-avx512.md, section 5): the procedure's two constants
    if a.gamma is not None or a.futility is not None:
        from harness.decide import groupseq

        if a.gamma is not None:
            groupseq.SPENDING_GAMMA = a.gamma
        if a.futility is not None:
            groupseq.FUTILITY_POWER = a.futility
        groupseq.boundaries.cache_clear()
        print(f"design: gamma {groupseq.SPENDING_GAMMA:g}, futility below {groupseq.FUTILITY_POWER:g} (what-if)")
    limits = [x / 100 for x in a.limits]
    rows = bench(a.folders, limits, a.batch, a.method, a.tasks)
    if rows:
        print(f"method: {a.method}, a look every {a.batch} items, error rate {ALPHA:g}\n")
        print(
            "| folder | cell | limit | sequence | fixed-n (all items) | CS whole sequence | sequential | items used | "
            "s all -> used |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for x in rows:
            t = f"{x['s_all']:.0f} -> {x['s_used']:.0f}" if x["s_all"] else "?"
            seq = x["sequential"] if x["replayable"] else f"({x['sequential']}: not replayable)"
            print(
                f"| {x['folder']} | {x['label']} [{x['cell']}] | {x['limit']:.0%} | {x['sequence']} | {x['fixed_n']} "
                f"(drop {x['drop_all']:+.1%}, CI {x['fixed_ci'][0]:+.1%} to {x['fixed_ci'][1]:+.1%}) | "
                f"{x['cs_all']} | {seq} | {x['items_used']}/{x['planned']} ({x['share']:.0%}) | {t} |"
            )
        s = summary(rows)
        print("\n" + summary_line(s))
        met = s["agree"] >= GOAL_AGREE and s["share"] <= GOAL_ITEMS
        print(
            f"goal (agreement >= {GOAL_AGREE:.0%} at <= {GOAL_ITEMS:.0%} of the items): {'met' if met else 'NOT met'}"
        )
        if a.oracle:
            from harness.decide import groupseq

            kept, groupseq.FUTILITY_POWER = groupseq.FUTILITY_POWER, 0.0  # conditional power is never below 0
            try:
                o = oracle(rows, bench(a.folders, limits, a.batch, a.method, a.tasks), a.batch)
            finally:
                groupseq.FUTILITY_POWER = kept
            print(
                f"oracle (knows the all-items verdict; stops at the design's first look that gives it, or at the "
                f"first look): {o['pairs']} pairs, agreement {o['agree']:.1%} at {o['share']:.1%} of the items"
            )
        other = "confidence-sequence" if a.method == "group-sequential" else "group-sequential"
        print(f"for comparison, {other}: " + summary_line(summary(bench(a.folders, limits, a.batch, other, a.tasks))))
    if a.real:
        print(f"\n## replay == real ({a.real})")
        for line in real_vs_replay(a.real):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())

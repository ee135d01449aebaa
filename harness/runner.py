"""The runner: the only module that wires the stages together.

plan -> pick the runnable cells (resume: cells done on THIS host are skipped unless forced) -> an executor runs
each cell (harness/cell/: the steps prepare, distill, compress, serve, measure, evaluate, shift, then stop)
-> the runner stores every result here, in this process: JSON first, then the DuckDB index. Executors are plugins
(local: one cell after another; ray: cells as Ray tasks); only the runner writes. The index never stops a
run: an ingest that fails (the file held by another process, not a DuckDB file) is one warning, and
`harness db rebuild` catches the index up from the JSONs (Runner._index).
Ctrl-C or SIGTERM stops the server group, stores nothing for the interrupted cell, and re-raises.
One writer: a lock file keeps two runs from writing the same results folder.

Resume is per host (results are keyed by (cell id, host id), harness/store/results.py): a cell done on
another host, or before host fingerprints (host `unknown`), runs again here. Its quality is not reused
either: kernels and emulated bf16 differ by ISA, so scores can differ in the last digits.
A failed attempt over a done result of this host is kept beside it (results/attempts/); the done result
stays the cell's result and its index row, and the attempt is reported as failed.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

from harness.decide.question import item_budget, reference_of
from harness.decide.settled import needs_evaluation
from harness.errors import DQError, PlanError
from harness.plan.cell import CellPlan, Plan
from harness.proc import sigterm_as_interrupt
from harness.progress import Progress
from harness.registry import executors
from harness.result import CellResult
from harness.result_facts import cell_status
from harness.runner_until import DecidedSummary, run_until_decided
from harness.settings import Settings
from harness.store import db
from harness.store.hosts import normalized_host, this_host
from harness.store.results import ResultStore, ResultUnreadable, parse

RUN_UNDER_OVERRIDE = "DQBENCH_HOST_CAPS_RUN"  # opt-in: run (fake engines) under a host override


@contextmanager
def writer_lock(results_dir: Path):
    results_dir.mkdir(parents=True, exist_ok=True)
    f = open(results_dir / ".writer.lock", "w")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise DQError(
            f"another `harness run` is writing {results_dir} (lock {results_dir / '.writer.lock'}); "
            f"wait for it or point DQBENCH_RESULTS elsewhere"
        ) from None
    try:
        yield
    finally:
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


def reference_items(
    plan: Plan, mine: dict[str, CellResult | None], force: bool, only: set[str] | None
) -> dict[str, int]:
    """Per reference cell of a `decide:` plan: the items its journal will hold once this run has run it
    (its budget when it runs, else what its stored decision scored), for its cells' resume check."""
    out: dict[str, int] = {}
    for c in plan.cells:
        if c.decide is None or reference_of(c) is not None or c.status == "infeasible":
            continue
        r = mine.get(c.cell_id)
        d = r.quality.decision if r is not None and r.done and r.quality else None
        runs = force or r is None or not r.done or needs_evaluation(c, r, None) is not None
        if runs and (not only or c.cell_id in only):
            out[c.cell_id] = item_budget(c.evaluation, c.decide)[0]
        elif d is not None:
            out[c.cell_id] = d.items_used
    return out


class Runner:
    def __init__(
        self,
        settings: Settings,
        progress: Progress | None = None,
        executor: str = "local",
        executor_options: dict | None = None,
    ) -> None:
        self.settings = settings
        self.store = ResultStore(settings.results_dir)
        self.progress = progress or Progress(quiet=True)
        self.executor = executors.get(executor)(settings, **(executor_options or {}))
        self._unindexed: list[db.Pair] = []  # index rows a failed ingest missed, oldest first
        self.summary: DecidedSummary | None = None  # what the last `--until-decided` run did and saved

    def _index(self, items: list[db.Pair], host: dict) -> None:
        """Update the DuckDB index; never stops the run. The JSON results are written before this and are
        the source of truth, so a failure (the file held by a `duckdb` shell or notebook, not a DuckDB
        file, damaged) is one warning and `harness db rebuild` catches the index up later.

        After a first failure, later ingests try once without waiting instead of being skipped, and carry
        the rows missed so far: a file held for the whole run costs its wait (db.WRITE_WAIT_S) once, not per
        cell, while a file held for a minute catches up by itself at the next cell, so the dashboard shows
        a long run's progress again without a rebuild."""
        path = self.settings.db_path
        behind = len(self._unindexed)
        try:
            db.ingest(path, [*self._unindexed, *items], host=host, wait=0 if behind else db.WRITE_WAIT_S)
        except Exception as exc:  # noqa: BLE001 - any index problem: the results are safe in their JSONs
            self._unindexed.extend(items)
            if not behind:
                why = (
                    exc.problem
                    if isinstance(exc, db.IndexUnavailable)
                    else f"the results index {path}: {type(exc).__name__}: {exc}"
                )
                self.progress.warn(
                    f"DuckDB index not updated: {why}. The run goes on and writes every "
                    f"result JSON; `harness db rebuild` catches the index up from them (later "
                    f"cells try the index once, without waiting)"
                )
            return
        self._unindexed = []
        if behind:
            self.progress.note(f"the DuckDB index {path} opens again: caught up with the rows it missed")

    @staticmethod
    def _estimates(runs: dict[str, dict[str, CellResult]], hid: str) -> dict[str, float]:
        """Expected wall seconds per cell, for the matrix ETA: the cell's last wall time on this host, else on
        any host (a slower or faster host still gives the order of magnitude); cells never run have none."""
        out = {}
        for cid, by_host in runs.items():
            r = by_host.get(hid) or next(iter(by_host.values()), None)
            if r is not None and r.wall_s:
                out[cid] = float(r.wall_s)
        return out

    @staticmethod
    def _parsed(cell: CellPlan, doc: dict, host: dict) -> CellResult:
        """The executor's result document as a CellResult; one that does not validate (a bug in a stage)
        is stored as the cell's failure, with why, instead of stopping the matrix."""
        try:
            return parse(doc)
        except ResultUnreadable as exc:
            return CellResult(
                cell_id=cell.cell_id,
                matrix=cell.matrix,
                label=cell.label,
                status="failed",
                failed_stage="store",
                reason=f"the cell's result is not a valid CellResult: {exc}",
                plan=cell.model_dump(mode="json"),
                host=doc.get("host") or host,
            )

    def run(
        self, plan: Plan, force: bool = False, only: set[str] | None = None, until_decided: bool = False
    ) -> dict[str, str]:
        """Run every planned cell of `plan`; returns cell_id -> final status. `until_decided`: measure until the
        matrix's `decide:` question is settled (harness/runner_until.py), its summary left in `self.summary`."""
        outcome: dict[str, str] = {}
        self.summary = None
        if until_decided and not any(c.decide for c in plan.cells):
            raise PlanError(
                f"--until-decided: matrix {plan.matrix} has no `decide:` block; add one (docs/matrix.md, `decide`) "
                f"naming the drop limit, and memory_gib/objective for the answer"
            )
        with writer_lock(self.settings.results_dir), sigterm_as_interrupt():
            host = this_host(self.settings)
            hid = host["host_id"]
            if str(host.get("source", "")).startswith("override") and os.environ.get(RUN_UNDER_OVERRIDE) != "1":
                # a preset's identity on real measurements would file this machine's figures under another host
                raise PlanError(
                    f"DQBENCH_HOST_CAPS={os.environ.get('DQBENCH_HOST_CAPS')} replaces the hardware probe; "
                    f"results of this run would be stored as host {hid} ({host.get('label')}), not as "
                    f"this machine. Unset DQBENCH_HOST_CAPS to run here (plan/validate/doctor accept it), "
                    f"or set {RUN_UNDER_OVERRIDE}=1 for runs with fake engines"
                )
            if hid == "unprobed":
                self.progress.warn(
                    f"the engine probe failed ({host.get('error')}); results are stored as "
                    f"host `unprobed`: run `harness doctor --refresh` to see why"
                )
            # index the whole plan first, so infeasible and pending cells are visible while we work
            mine = {c.cell_id: self.store.read(c.cell_id, hid) for c in plan.cells}  # each result read once
            self._unindexed = []
            self._index([(c.model_dump(mode="json"), mine[c.cell_id]) for c in plan.cells], host)
            todo = []
            refs = reference_items(plan, mine, force, only)
            for c in plan.cells:
                if only and c.cell_id not in only:
                    continue
                if c.status == "infeasible":  # the plan says this host cannot run it, whatever was stored
                    outcome[c.cell_id] = "infeasible"
                elif not force and cell_status(c.status, c.reason, mine[c.cell_id]).status == "done":
                    # a done cell whose `decide:` question is not settled re-runs its evaluation only
                    why = needs_evaluation(c, mine[c.cell_id], refs.get(reference_of(c) or ""))
                    if why and not until_decided:
                        self.progress.note(f"{c.cell_id} {c.label}: {why}: re-running its evaluation only")
                        todo.append(c.model_copy(update={"evaluate_only": True}))
                    else:
                        outcome[c.cell_id] = "done (cached)"
                else:
                    todo.append(c)
            self.progress.note(
                f"host: {host.get('label')} [{hid}]"
                + (f" ({host['source']})" if str(host.get("source", "")).startswith("override") else "")
            )
            runs = {c.cell_id: self.store.hosts_of(c.cell_id) for c in todo}
            elsewhere = [cid for cid, by_host in runs.items() if set(by_host) - {hid}]
            if elsewhere:
                self.progress.note(
                    f"{len(elsewhere)} cell(s) to run have a result from another host; results are "
                    f"per host (figures and scores are not reused), so they run here too"
                )
            if until_decided:  # cells done here count toward the answer; the loop picks what runs
                todo = [c for c in plan.cells if c.status != "infeasible" and (not only or c.cell_id in only)]
            self.progress.start_matrix(
                plan.matrix, len(todo), skipped=len(plan.cells) - len(todo), estimates=self._estimates(runs, hid)
            )
            self.executor.preflight(todo)

            def finished(cell: CellPlan, result: CellResult | dict) -> None:
                r = result if isinstance(result, CellResult) else self._parsed(cell, result, host)
                path = self.store.write(r)
                # index what the store now holds: a failure beside a done result leaves the done one in place
                kept = self.store.read(cell.cell_id, normalized_host({"host": r.host})["host_id"]) or r
                if path.parent == self.store.attempts_dir:
                    self.progress.note(
                        f"{cell.cell_id}: this attempt failed; kept the done result of "
                        f"{kept.finished_at} (attempt stored as {path})"
                    )
                self._index([(kept.plan, kept)], host)
                self.progress.end_cell(cell, r.model_dump(mode="json"))
                outcome[cell.cell_id] = r.status

            if until_decided:
                self.summary = run_until_decided(self, plan, todo, mine, force, finished)
                outcome.update(self.summary.outcome)
            else:  # plan order puts parents first; a failed parent does not block its children
                self.executor.run(todo, finished, self.progress)
            self.progress.finish_matrix()
            if self._unindexed:
                missed = len({plan["cell_id"] for plan, _ in self._unindexed})
                self.progress.warn(
                    f"the DuckDB index {self.settings.db_path} still misses {missed} "
                    f"cell(s) of this run; their JSON results are written: run `harness db "
                    f"rebuild` once the file is free"
                )
        return outcome

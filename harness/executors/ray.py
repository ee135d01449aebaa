"""Ray executor: each cell is a Ray task on one node of a cluster (or of a local instance sized to this machine);
a child cell's task takes its parent's result as an argument, so it waits.

Where each thing comes from (harness/executors/ray_nodes.py):
- paths and interpreters: the node's own. The worker rebuilds `Settings` from the environment its node's
  `ray start` was given; the driver sends the cell, the results folder and a few variables (offline flags,
  plugin overrides; the hub token only for a plan with hub downloads), never its Settings.
- a local instance (no --address) cannot be kept to loopback: Ray 2.60's gRPC servers (GCS, raylet, workers)
  listen on every interface, and Ray turns a node address of 127.0.0.1 into the machine's outward one
  (services.resolve_ip_for_localhost; measured with `ss`, tests/integration/test_loopback.py). Its ports are
  guarded by Ray's token authentication, on by default since Ray 2.5x: a local instance is refused with
  RAY_AUTH_MODE=disabled (docs/operations.md#security).
- storage: before any cell runs, `preflight` writes a marker under the driver's DQBENCH_HOME and results folder
  and asks every node to find both; a node that cannot (another home, an unmounted results path), a node
  whose stage interpreter is missing, or a plan whose engine (cpu / gpu) no node has is refused, naming the
  node, the path and the fix.
- compute: every cell holds its node's `dq_perf` resource from its first step to its last, so one cell runs
  per node at a time and a load test never shares the cores with another cell; a CUDA cell asks for its
  servers' tensor x pipeline x data parallel GPUs; a CPU cell for the memory the plan estimates. When nodes
  have different engines, a cell runs only on nodes of its engine (a label selector on the node ids).
- progress: workers send their stage lines to a relay actor; the driver prints them as they come.

Ray workers return the cell's CellResult (a pydantic model, pickled as it is); the driver (the runner) alone
writes JSON and DuckDB, so a crashed worker loses only its own cell. Ray retries a task whose worker died
`retries` times, then the driver stores the cell as failed.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.cell import failed_doc
from harness.errors import DQError
from harness.executors.ray_nodes import (
    MARKER_DIR,
    PERF_RESOURCE,
    cell_options,
    engine_nodes,
    engine_of,
    node_facts,
    node_name,
    node_problems,
    remote_cell,
    task_env,
)
from harness.executors.ray_progress import ProgressRelay, print_lines
from harness.plan.cell import CellPlan
from harness.progress import Progress
from harness.result import CellResult
from harness.settings import REPO_ROOT, Settings

AUTH_MODE_ENV = "RAY_AUTH_MODE"  # Ray's switch for its token authentication ("disabled" turns it off)
NODE_ANSWER_S = 120.0  # a node that does not answer the storage check in this time is refused
POLL_S = 1.0  # how often the driver prints the workers' lines while it waits for results


class RayExecutor:
    def __init__(
        self,
        settings: Settings,
        address: str | None = None,
        retries: int = 2,
        shared_dir: str | None = None,
        num_cpus: int | None = None,
        cpus_per_cell: float = 1.0,
    ) -> None:
        self.settings, self.address, self.retries = settings, address, retries
        self.shared_dir = Path(shared_dir).resolve() if shared_dir else None
        self.num_cpus, self.cpus_per_cell = num_cpus, cpus_per_cell
        self.facts: list[dict[str, Any]] = []  # node_facts of the nodes with a perf slot, after preflight
        self.hub_downloads = False  # whether the plan downloads a hub model: only then does the token go to Ray
        self.node_lines: list[str] = []  # what preflight found of each node, printed when the run starts

    def _init(self) -> None:
        try:
            import ray
        except ImportError:
            raise DQError(
                "--executor ray needs the `ray` package (pip install 'ray==2.60.0'; it is in requirements/cpu.txt)"
            ) from None
        if ray.is_initialized():
            return
        env = task_env(self.settings.results_dir, hub_downloads=self.hub_downloads)
        kw: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
        if self.address:
            ray.init(address=self.address, runtime_env={"env_vars": env}, **kw)
        else:  # a local instance sized to this machine: one node, its workers this checkout's
            if os.environ.get(AUTH_MODE_ENV, "").strip().lower() == "disabled":
                raise DQError(
                    f"{AUTH_MODE_ENV}=disabled: a local Ray instance listens on every interface of this machine "
                    f"(Ray offers no loopback-only bind), and without its token authentication anyone who reaches "
                    f"the machine could run code in it; unset {AUTH_MODE_ENV}, or use the local executor"
                )
            env["PYTHONPATH"] = str(REPO_ROOT) + (
                os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else ""
            )
            ray.init(
                num_cpus=self.num_cpus,
                resources={PERF_RESOURCE: 1},
                object_store_memory=256 * 2**20,
                runtime_env={"env_vars": env},
                **kw,
            )

    def preflight(self, cells: list[CellPlan]) -> None:
        if not cells:
            return
        from harness.models.hub import downloads_allowed
        from harness.models.sources import hub_models

        self.hub_downloads = bool(hub_models(cells)) and downloads_allowed(self.settings)
        self._init()
        import ray

        results = self.settings.results_dir.resolve()
        if self.shared_dir is not None and not results.is_relative_to(self.shared_dir):
            raise DQError(f"--shared-dir {self.shared_dir} does not hold the results folder {results}")
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        slots = [n for n in nodes if n.get("Resources", {}).get(PERF_RESOURCE, 0) >= 1]
        if not slots:
            raise DQError(
                f"no node of the Ray cluster ({len(nodes)} alive) has the `{PERF_RESOURCE}` resource, which a "
                f"cell holds on its node while it runs (one cell per node at a time): start each node that "
                f"may run cells with `ray start ... --resources='{{\"{PERF_RESOURCE}\": 1}}'`"
            )
        self.facts = self._node_facts(slots)
        from harness.env import git_sha

        problems = node_problems(self.facts, self.settings, cells, code=git_sha())
        problems += self._unfit(cells, slots)
        if problems:
            raise DQError("the Ray cluster cannot run this plan:\n  - " + "\n  - ".join(problems))
        for n in nodes:
            if n not in slots:
                self.node_lines.append(
                    f"Ray node {n.get('NodeManagerAddress')} (node {n['NodeID'][:8]}) has no `{PERF_RESOURCE}` "
                    f"resource: it runs no cell"
                )
        for f in self.facts:
            res = next(n["Resources"] for n in slots if n["NodeID"] == f["node_id"])
            self.node_lines.append(
                f"Ray node {node_name(f)}: engine {f['engine'] or 'unknown'}, {res.get('CPU', 0):g} CPU(s), "
                f"{res.get('GPU', 0):g} GPU(s), {res[PERF_RESOURCE]:g} perf slot(s); stage python {f['python']}, "
                f"DQBENCH_HOME {f['home']}, llama.cpp {f['llamacpp'] or 'not built'}"
            )

    def _node_facts(self, slots: list[dict]) -> list[dict[str, Any]]:
        """node_facts() of every node in `slots`, run on that node, with the driver's markers in place."""
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        token = f"{os.getpid()}-{secrets.token_hex(6)}"
        where = {"home": self.settings.home, "results": self.settings.results_dir}
        marks = {k: Path(d) / MARKER_DIR / token for k, d in where.items()}
        for m in marks.values():
            m.parent.mkdir(parents=True, exist_ok=True)
            m.write_text(token)
        try:
            probe = ray.remote(node_facts)
            refs = {
                n["NodeID"]: probe.options(
                    num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
                ).remote(dict.fromkeys(marks, token))
                for n in slots
            }
            ready, late = ray.wait(list(refs.values()), num_returns=len(refs), timeout=NODE_ANSWER_S)
            if late:
                ids = [nid[:8] for nid, r in refs.items() if r in late]
                raise DQError(
                    f"Ray node(s) {', '.join(ids)} did not answer the storage check in {NODE_ANSWER_S:.0f} s "
                    f"(`ray status` shows the nodes; a node whose workers cannot import dqbench never answers)"
                )
            try:
                return list(ray.get(ready))
            except ray.exceptions.RayError as exc:
                raise DQError(
                    f"a Ray node failed the storage check: {type(exc).__name__}: {str(exc)[:800]} (each node "
                    f"needs dqbench importable in the interpreter its `ray start` runs)"
                ) from None
        finally:
            for m in marks.values():
                m.unlink(missing_ok=True)

    def _selectors(self, cells: list[CellPlan]) -> dict[str, dict | None]:
        """Per engine, the label selector that keeps its cells on its nodes; None when every node fits."""
        out: dict[str, dict | None] = {}
        for need in {engine_of(c) for c in cells}:
            ids = engine_nodes(self.facts, need)
            fits_all = len(ids) == len(self.facts)
            out[need] = None if fits_all else {"ray.io/node-id": f"in({','.join(ids)})"}
        return out

    def _unfit(self, cells: list[CellPlan], slots: list[dict]) -> list[str]:
        """Cells no node of their engine has the resources for: Ray would wait for such a node forever."""
        out = []
        for c in cells:
            ids = set(engine_nodes(self.facts, engine_of(c)))
            opts = cell_options(c, self.cpus_per_cell, self.retries)
            want = {"CPU": opts["num_cpus"], "GPU": opts.get("num_gpus", 0), "memory": opts.get("memory", 0)}
            fit = [
                n for n in slots if n["NodeID"] in ids and all(n["Resources"].get(k, 0) >= v for k, v in want.items())
            ]
            if ids and not fit:
                asks = ", ".join(f"{k} {v / 2**30:.1f} GiB" if k == "memory" else f"{k} {v:g}" for k, v in want.items())
                out.append(
                    f"cell {c.cell_id} {c.label} asks for {asks}; no node of its engine has that much "
                    f"(GPUs: the servers' tensor x pipeline x data parallel sizes)"
                )
        return out

    def run(self, cells: list[CellPlan], finished: Callable[[CellPlan, CellResult], None], progress: Progress) -> None:
        if not cells:
            return
        import ray

        for line in self.node_lines:
            progress.note(line)
        relay: Any = ray.remote(num_cpus=0)(ProgressRelay).remote()
        remote = ray.remote(remote_cell)
        selectors = self._selectors(cells) if self.facts else {}
        refs: dict[str, object] = {}
        pending: dict[object, CellPlan] = {}
        for c in cells:  # parents first (plan order)
            deps = [refs[c.parent_id]] if c.parent_id in refs else []
            opts = cell_options(c, self.cpus_per_cell, self.retries, selectors.get(engine_of(c)))
            ref = remote.options(**opts).remote(c.model_dump(mode="json"), relay, *deps)
            refs[c.cell_id] = ref
            pending[ref] = c
            progress.note(f"submitted {c.cell_id} {c.label} to Ray")
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
                print_lines(progress, _drain(relay))
                if not ready:
                    continue
                cell = pending.pop(ready[0])
                try:
                    result: CellResult = ray.get(ready[0])
                except ray.exceptions.RayError as exc:  # worker died more than `retries` times, or a parent did
                    result = failed_doc(
                        cell,
                        "executor",
                        f"Ray task failed after {self.retries} retries: {type(exc).__name__}: {str(exc)[:500]}",
                        settings=self.settings,
                    )
                finished(cell, result)
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref, force=True)  # the workers' server groups die with them (parent-death signal)
            raise
        finally:
            ray.kill(relay)


def _drain(relay: Any) -> list[tuple[str, str, str]]:
    import ray

    try:
        return ray.get(relay.drain.remote(), timeout=30)
    except ray.exceptions.RayError:  # a lost relay loses lines, never results
        return []

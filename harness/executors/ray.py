"""Ray executor: each cell is a Ray task asking for what its plan says (CPUs, a GPU for CUDA cells,
memory from the estimate); a child cell's task takes its parent's result as an argument, so it waits.

Ray workers return the cell's CellResult (a pydantic model, pickled as it is); the driver (the runner)
alone writes JSON and DuckDB, so a crashed worker loses only its own cell. Ray retries a task whose worker
died `retries` times, then the driver stores the cell as failed. Artefacts and logs go under the results
folder, which must be a shared path (`shared_dir`) when the cluster has more than one node.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.cell import execute_cell, failed_doc
from harness.errors import DQError
from harness.plan.models import CellPlan
from harness.progress import Progress
from harness.result import CellResult
from harness.settings import REPO_ROOT, Settings

# environment the workers need: where dqbench and its caches are, offline flags, plugin overrides
PASS_ENV = (
    "DQBENCH_HOME",
    "DQBENCH_RESULTS",
    "DQBENCH_DB",
    "DQBENCH_STAGE_PYTHON",
    "DQBENCH_PLUGINS",
    "DQBENCH_HOST_CAPS",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "HF_HOME",
)


def _remote_cell(cell_json: dict, settings: Settings, *parents: object) -> CellResult:
    """Runs on a Ray worker. `parents` are the parent cells' results: passing them makes Ray wait. A SIGTERM
    to the worker stops the cell's server and workers like Ctrl-C does locally."""
    from harness.proc import sigterm_as_interrupt

    with sigterm_as_interrupt():
        return execute_cell(CellPlan.model_validate(cell_json), settings)


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

    def _init(self) -> None:
        try:
            import ray
        except ImportError:
            raise DQError(
                "--executor ray needs the `ray` package (pip install 'ray==2.60.0'; it is in requirements/cpu.txt)"
            ) from None
        if ray.is_initialized():
            return
        env = {k: os.environ[k] for k in PASS_ENV if k in os.environ}
        env["PYTHONPATH"] = str(REPO_ROOT) + (
            os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else ""
        )
        env["DQBENCH_RESULTS"] = str(self.settings.results_dir)
        kw: dict[str, Any] = dict(
            runtime_env={"env_vars": env}, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True
        )
        if self.address:
            ray.init(address=self.address, **kw)
        else:  # a local instance sized to this machine
            ray.init(num_cpus=self.num_cpus, object_store_memory=256 * 2**20, **kw)

    def preflight(self, cells: list[CellPlan]) -> None:
        if not cells:
            return
        self._init()
        import ray

        nodes = [n for n in ray.nodes() if n.get("Alive")]
        if len(nodes) > 1:
            results = self.settings.results_dir.resolve()
            if self.shared_dir is None or not results.is_relative_to(self.shared_dir):
                raise DQError(
                    f"the Ray cluster has {len(nodes)} nodes but results/artefacts go to {results}, which "
                    f"is not under a shared path; mount shared storage on every node and pass "
                    f"--shared-dir PATH with DQBENCH_RESULTS inside it"
                )

    def _options(self, cell: CellPlan) -> dict:
        opts: dict = {"num_cpus": self.cpus_per_cell, "max_retries": self.retries, "retry_exceptions": False}
        if cell.device == "cuda":
            opts["num_gpus"] = 1
        if cell.estimate is not None and cell.device == "cpu":
            opts["memory"] = int(cell.estimate.total_gib * 2**30)
        return opts

    def run(self, cells: list[CellPlan], finished: Callable[[CellPlan, CellResult], None], progress: Progress) -> None:
        if not cells:
            return
        import ray

        remote = ray.remote(_remote_cell)
        refs: dict[str, object] = {}
        pending: dict[object, CellPlan] = {}
        for c in cells:  # parents first (plan order)
            deps = [refs[c.parent_id]] if c.parent_id in refs else []
            ref = remote.options(**self._options(c)).remote(c.model_dump(mode="json"), self.settings, *deps)
            refs[c.cell_id] = ref
            pending[ref] = c
            progress.note(f"submitted {c.cell_id} {c.label} to Ray")
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
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

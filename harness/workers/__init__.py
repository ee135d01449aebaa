"""Worker entry points, each run as `python -m harness.workers.NAME` in a subprocess (harness/proc.py
`run_worker`), each through the one `proc.worker_main`: `--config FILE.json` in, its result JSON written
atomically, logs to the file the parent opened. "Worker" is the process; "stage" is only the pipeline step
of a cell (prepare, distill, compress ...) that starts it.

These are the only modules allowed to import torch / transformers / vllm / lm_eval.

A worker that builds a shared cache entry is told its builder lock in DQBENCH_BUILDER_LOCK and holds it
for as long as it lives (taken here, before the worker's own module runs): a worker runs in its own process
group and outlives a parent killed with SIGKILL, and the next builder waits for it to end before it
removes what it was writing (harness/locks.py).
"""

import os as _os

if _os.environ.get("DQBENCH_BUILDER_LOCK"):
    from harness.locks import hold_builder_lock as _hold

    _hold(_os.environ["DQBENCH_BUILDER_LOCK"])

"""lm-eval evaluator plugin: scores a cell with lm-eval, in a worker subprocess, on the dq_* offline tasks.

The serving plugin says how its cell is scored (`scoring()`): `local-completions` against a server that
returns prompt logprobs (vLLM), or an in-process model over the same artefact where the server cannot
(llama.cpp). The result says which. Adds dqbench's own task hash (template + data sha256)."""

from __future__ import annotations

from pathlib import Path

from harness.evaluate.data import TaskData, known_tasks
from harness.evaluate.items import attach_items
from harness.proc import run_worker, write_json_atomic
from harness.settings import Settings


class LMEvalEvaluator:
    kind = "lm_eval"

    def __init__(self, spec, settings: Settings) -> None:
        self.spec, self.settings = spec, settings
        self.data = TaskData(settings)

    def plan_problems(self) -> list[str]:
        known = known_tasks()
        return [
            f"evaluation.tasks: unknown task {t.name!r} (known: {', '.join(known)})"
            for t in self.spec.tasks
            if t.name not in known
        ]

    def prepare(self, log: Path) -> None:
        self.data.prepare(log)

    def evaluate(self, scoring: dict, workdir: Path, log: Path) -> dict:
        spec = self.spec
        cfg = {
            "lm": scoring["model"],
            "model_args": scoring["model_args"],
            "register": scoring.get("register"),
            "include_path": str(self.data.task_dir()),
            "num_concurrent": spec.num_concurrent,
            "max_length": spec.max_length,
            "batch_size": spec.batch_size,
            "seed": spec.seed,
            "samples_dir": str(workdir / "samples"),
            "tasks": [{"name": t.name, "limit": t.limit, "num_fewshot": t.num_fewshot} for t in spec.tasks],
        }
        cfg_path, out_path = workdir / "evaluate-in.json", workdir / "evaluate-out.json"
        write_json_atomic(cfg_path, cfg)
        out_path.unlink(missing_ok=True)
        env = {**({"HF_HUB_OFFLINE": "1"} if self.settings.offline else {}), **scoring.get("env", {})}
        run_worker(
            "harness.workers.evaluate",
            ["--config", str(cfg_path), "--out", str(out_path)],
            log,
            self.settings,
            stage="evaluate",
            env=env,
        )
        import json

        out = json.loads(out_path.read_text())
        out["scored_by"] = scoring.get("how")
        for name, t in out["tasks"].items():
            t["task_hash"] = self.data.task_hash(name)
            t["samples_path"] = str(workdir / "samples" / f"{name}.jsonl")
        # the per-item scores go into the result itself: flips, paired CIs and `db rebuild` read them
        # from there, never from work/ (harness/evaluate/items.py)
        attach_items(out["tasks"], workdir / "samples")
        return out

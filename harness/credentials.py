"""Credentials (the hub token) and where they may go: only to the processes that download.

The token a user exports for gated models (HF_TOKEN, HUGGING_FACE_HUB_TOKEN) is needed by one step, the hub
download (harness/models/download_worker.py). Every other process dqbench starts -- vLLM, llama-server, the
trainers, lm-eval, the probes, a local Ray -- runs offline from local files and must not carry it: a child's
environment is readable in /proc/PID/environ by the same user and by root, shows in Ray's job records, and
is copied into every process that child starts in turn.

So an entry point (the harness command line, a cell's Ray task) moves the token out of its own environment
into this module (`hold_credentials`) before it starts anything; `harness/proc.child_env` builds every
child's environment without it; and a spawn that downloads asks for it explicitly (`child_env(...,
credentials=True)`, `run_worker(..., credentials=True)`). A token that is still in the environment (a library
use that never went through an entry point) is treated the same way: children get it only when they ask.

Only the standard library.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping

# The variables huggingface_hub reads a token from. HF_TOKEN_PATH (a file's path, not a secret) stays.
SECRET_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
_HELD: dict[str, str] = {}


def hold_credentials(environ: MutableMapping[str, str] | None = None) -> None:
    """Move the credentials out of `environ` (this process's environment) into this module's keeping."""
    env = os.environ if environ is None else environ
    for k in SECRET_VARS:
        value = env.pop(k, None)
        if value:
            _HELD[k] = value


def credentials(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The credentials this process holds: those held, and any still in `environ` (which win: a later,
    explicit setting)."""
    env = os.environ if environ is None else environ
    return {**_HELD, **{k: env[k] for k in SECRET_VARS if env.get(k)}}


def without_credentials(env: Mapping[str, str]) -> dict[str, str]:
    """`env` without any credential variable."""
    return {k: v for k, v in env.items() if k not in SECRET_VARS}


def forget_credentials() -> None:
    """Drop what is held (tests, and a process about to exec something else)."""
    _HELD.clear()

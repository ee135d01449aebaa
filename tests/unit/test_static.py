"""Lint, format and type checks, run by the README's test command (and so by CI): `ruff check`, `ruff
format --check` over the repository and `mypy` over harness/ and advisor/ (configuration in pyproject.toml).
The tools come from requirements/dev.txt, which the set-up layers onto the environment; a missing tool
fails here rather than skipping, so a check can never pass by not running."""

import subprocess
import sys

import pytest

from tests.conftest import REPO


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=900)


@pytest.mark.parametrize(
    "args",
    [("ruff", "check", "."), ("ruff", "format", "--check", "."), ("mypy",)],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_static_check_passes(args):
    r = _run(*args)
    assert "No module named" not in r.stderr, f"{args[0]} is not installed: run ./dq setup (requirements/dev.txt)"
    assert r.returncode == 0, (r.stdout + r.stderr)[-6000:]

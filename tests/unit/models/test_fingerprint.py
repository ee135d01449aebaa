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


def test_local_spreads_its_manifest_under_its_own_provenance(tmp_path):
    folder = tmp_path / "student"
    folder.mkdir()
    src = LocalSource(SimpleNamespace(path=str(folder)), load_settings())
    assert src.fingerprint().model_dump(mode="json") == {"kind": "local", "path": str(folder)}
    # a manifest without kind or path: spread over the top level as it always was (the same dump, byte for byte)
    plain = {"source": "pypi:x==1", "gguf_sha256": "ab", "files": {"a": "1"}}
    (folder / "dqbench-manifest.json").write_text(json.dumps(plain))
    before = {"kind": "local", "path": str(folder), **plain}
    assert list(src.fingerprint().model_dump(mode="json").items()) == list(before.items())
    # a manifest cannot replace the source's provenance: its kind and path are kept aside (issue #30)
    manifest = {"dqbench_student": "k", "kind": "hub", "path": "/elsewhere", "teacher": {"kind": "hub", "id": "t"}}
    (folder / "dqbench-manifest.json").write_text(json.dumps(manifest))
    fp = src.fingerprint()
    assert isinstance(fp, LocalFingerprint)
    assert list(fp.model_dump(mode="json").items()) == [
        ("kind", "local"),
        ("path", str(folder)),
        ("dqbench_student", "k"),
        ("teacher", {"kind": "hub", "id": "t"}),
        ("manifest_kind", "hub"),
        ("manifest_path", "/elsewhere"),
    ]
    (folder / "dqbench-manifest.json").write_text("[1, 2]")  # not an object: says nothing
    assert src.fingerprint().model_dump(mode="json") == {"kind": "local", "path": str(folder)}

"""Hub models downloaded before serving, for real: huggingface_hub's snapshot_download in the download worker
(harness/models/download_worker.py) against a fake hub (tests/fakes/hub_server.py) at HF_ENDPOINT. Progress,
a resumed download after the worker was killed mid-file, the pinned commit, HF_TOKEN, gated / missing / bad
revision errors, offline with a warm cache, and `harness prepare` on a matrix."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from harness.errors import PlanError, StageError
from harness.models import hub
from harness.models.sources import HubSource
from harness.settings import REPO_ROOT, load_settings
from harness.spec.sources import HubModel
from tests.fakes.hub_server import FakeHub, FakeRepo

V1, V2 = "1" * 40, "2" * 40
HOME = Path(
    os.environ.get("DQBENCH_HOME") or Path.home() / ".cache" / "dqbench"
)  # this machine's, before tests move it
WEIGHTS = 3 * 2**20
CONFIG = {
    "model_type": "llama",
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 49152,
}


@pytest.fixture
def repo_files(tmp_path) -> dict[str, Path]:
    """Two commits of one small repo; v2 has other weights. Plus a gated copy."""
    out = {}
    for name, seed in (("v1", 1), ("v2", 2)):
        d = tmp_path / "remote" / name
        d.mkdir(parents=True)
        (d / "config.json").write_text(json.dumps({**CONFIG, "num_hidden_layers": seed}))
        (d / "model.safetensors").write_bytes(hashlib.sha256(bytes([seed])).digest() * (WEIGHTS // 32))
        (d / "original").mkdir()
        (d / "original" / "consolidated.00.pth").write_bytes(b"x" * 4096)  # never downloaded
        out[name] = d
    return out


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("DQBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DQBENCH_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # no stored token of this machine's user
    for k in ("HF_HUB_CACHE", "HF_TOKEN", "HF_TOKEN_PATH"):
        monkeypatch.delenv(k, raising=False)
    # as ./dq sets them: every stage offline, the download step allowed online
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv(hub.DOWNLOAD_ENV, "1")
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "60")  # a stalled read is ended by our kill, not a retry
    return tmp_path


def fake_hub(files: dict[str, Path], **kw) -> FakeHub:
    return FakeHub(
        [
            FakeRepo("org/tiny", {V1: files["v1"], V2: files["v2"]}, refs={"main": V2, "v1": V1}),
            FakeRepo("org/gated", {V1: files["v1"]}, refs={"main": V1}, gated=True, accepted_tokens=("hf_ok",)),
        ],
        **kw,
    )


def source(repo: str, revision: str | None = None) -> HubSource:
    return HubSource(HubModel(kind="hub", id=repo, revision=revision), load_settings())


def test_download_at_a_tag_with_progress_pins_the_commit_and_reuses_it(env, repo_files, monkeypatch):
    from harness.proc import progress_to

    with fake_hub(repo_files) as h:
        monkeypatch.setenv("HF_ENDPOINT", h.url)
        src, seen = source("org/tiny", "v1"), []
        assert src.available() is None  # not here yet, but the prepare step may download it
        with progress_to(seen.append):
            src.prepare(env / "prepare.log")
        folder = Path(src.resolve())
        assert folder.name == V1 and folder.parent.name == "snapshots"
        assert (folder / "model.safetensors").read_bytes() == (repo_files["v1"] / "model.safetensors").read_bytes()
        assert not (folder / "original").exists()
        assert src.fingerprint().model_dump(mode="json") == {
            "kind": "hub",
            "id": "org/tiny",
            "revision": "v1",
            "commit": V1,
            "path": str(folder),
        }
        mine = [r for r in seen if r.get("what") == "download org/tiny"]
        assert mine and mine[-1]["unit"] == "MiB" and mine[-1]["done"] == mine[-1]["total"] == 3.0
        # the default branch is another commit, with other weights
        head = source("org/tiny")
        head.prepare(env / "prepare.log")
        assert Path(head.resolve()).name == V2 and head.arch() is not None
        n = len(h.requests)
        again = source("org/tiny", "v1")
        again.prepare(env / "prepare.log")  # recorded: nothing asked of the hub
        assert len(h.requests) == n and again.resolve() == str(folder)


def test_a_dropped_connection_resumes_with_a_range_request(env, repo_files, monkeypatch):
    # past huggingface_hub's 10 MiB read chunk, so that bytes reach the disk before the connection drops
    big = repo_files["v1"] / "model.safetensors"
    big.write_bytes(os.urandom(12 * 2**20))
    with fake_hub(repo_files, drop_after=11 * 2**20) as h:
        monkeypatch.setenv("HF_ENDPOINT", h.url)
        rec = hub.ensure(load_settings(), "org/tiny", "v1", env / "prepare.log")
        ranges = [r["range"] for r in h.requests if r["method"] == "GET" and r["path"].endswith("model.safetensors")]
    assert ranges == [None, f"bytes={10 * 2**20}-"]  # what had reached the disk was kept
    assert (Path(rec.path) / "model.safetensors").read_bytes() == big.read_bytes()


def test_a_killed_download_keeps_its_finished_files(env, repo_files, monkeypatch):
    from harness.models import download_worker

    (repo_files["v1"] / "tokenizer.json").write_text("{}" * 1000)
    s = load_settings()
    with fake_hub(repo_files, stall_after=2**20) as h:
        monkeypatch.setenv("HF_ENDPOINT", h.url)
        with pytest.raises(StageError, match="timed out"):  # the worker killed in the middle of the weights
            hub.ensure(s, "org/tiny", "v1", env / "prepare.log", timeout=8)
        assert hub.recorded(s, "org/tiny", "v1") is None  # no record for half a model
        blobs = env / "hf" / "hub" / "models--org--tiny" / "blobs"
        leftovers = list(blobs.glob("*.incomplete"))
        assert leftovers
        old = time.time() - download_worker.STALE_S - 1
        for p in leftovers:
            os.utime(p, (old, old))
        rec = hub.ensure(s, "org/tiny", "v1", env / "prepare.log")
        gets = [r["path"].rsplit("/", 1)[-1] for r in h.requests if r["method"] == "GET" and "/resolve/" in r["path"]]
    # the small files were done before the kill: fetched once; the weights twice (the cut copy is not reusable)
    assert sorted(gets) == ["config.json", "model.safetensors", "model.safetensors", "tokenizer.json"]
    assert not list(blobs.glob("*.incomplete"))  # the killed run's partial file was deleted
    assert (Path(rec.path) / "model.safetensors").read_bytes() == (repo_files["v1"] / "model.safetensors").read_bytes()


def test_gated_missing_bad_revision_and_no_network_each_say_what_to_do(env, repo_files, monkeypatch):
    s = load_settings()
    with fake_hub(repo_files) as h:
        monkeypatch.setenv("HF_ENDPOINT", h.url)
        with pytest.raises(PlanError) as e:
            hub.ensure(s, "org/gated", None, env / "log")
        assert "gated" in str(e.value) and f"{h.url}/org/gated" in str(e.value) and "no token" in str(e.value)
        monkeypatch.setenv("HF_TOKEN", "hf_not_accepted")
        with pytest.raises(PlanError, match="has most likely not accepted the licence"):
            hub.ensure(s, "org/gated", None, env / "log")
        monkeypatch.setenv("HF_TOKEN", "hf_ok")  # HF_TOKEN honoured: the licence accepted, it downloads
        assert hub.ensure(s, "org/gated", None, env / "log").commit == V1
        assert {r["token"] for r in h.requests if "/resolve/" in r["path"]} >= {"hf_ok"}
        with pytest.raises(PlanError, match="'org/nope' was not found"):
            hub.ensure(s, "org/nope", None, env / "log")
        with pytest.raises(PlanError, match="has no revision 'v9'"):
            hub.ensure(s, "org/tiny", "v9", env / "log")
        assert hub.recorded(s, "org/tiny", "v9") is None
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(PlanError, match="could not reach the hub at http://127.0.0.1:9"):
        hub.ensure(s, "org/tiny", "v1", env / "log")


def test_offline_a_warm_cache_still_serves_and_nothing_is_fetched(env, repo_files, monkeypatch):
    with fake_hub(repo_files) as h:
        monkeypatch.setenv("HF_ENDPOINT", h.url)
        source("org/tiny", "v1").prepare(env / "log")
        hub.record_path(load_settings(), "org/tiny", "v1").unlink()  # only huggingface_hub's cache remains
    monkeypatch.setenv(hub.DOWNLOAD_ENV, "0")  # HF_HUB_OFFLINE=1 of your own: no download step either
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the hub is gone
    warm = source("org/tiny", "v1")
    assert warm.available() is None
    warm.prepare(env / "log")
    assert Path(warm.resolve()).name == V1 and warm.record and warm.record.via == "cache"
    cold = source("org/tiny", "v7")
    assert "downloads are off" in (cold.available() or "")


def test_harness_prepare_downloads_a_matrix_hub_model(env, repo_files, base_matrix, monkeypatch):
    """The command a user runs: `harness prepare MATRIX` for a matrix whose model is on the (fake) hub."""
    m = base_matrix
    m["models"] = [{"name": "tiny", "source": {"kind": "hub", "id": "org/tiny", "revision": "v1"}}]
    path = env / "m.yaml"
    path.write_text(yaml.safe_dump(m))
    # this machine's probe, tools and evaluation data (made afresh they take minutes, and are not the point);
    # its own models folder, for the hub record
    (env / "home").mkdir(exist_ok=True)
    for entry in HOME.iterdir() if HOME.is_dir() else ():
        if entry.name != "models":
            (env / "home" / entry.name).symlink_to(entry)
    with fake_hub(repo_files) as h:
        r = subprocess.run(
            [sys.executable, "-m", "harness", "prepare", str(path)],
            cwd=REPO_ROOT,
            env={**os.environ, "HF_ENDPOINT": h.url},
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"org/tiny@v1 = {V1}" in r.stderr and "download org/tiny" in r.stderr  # the commit, the progress
    assert f"model tiny: {env / 'hf' / 'hub' / 'models--org--tiny' / 'snapshots' / V1}" in r.stdout


def test_a_download_and_the_wait_for_anothers_are_bounded_by_the_machines_timeout(env, repo_files, monkeypatch):
    """DQBENCH_DOWNLOAD_TIMEOUT_S bounds a stalled download (the worker is killed, no record) and the wait for
    another process that holds the model's download lock (issue #30: neither waits for ever)."""
    from harness.locks import LockTimeout, file_lock

    monkeypatch.setenv("DQBENCH_DOWNLOAD_TIMEOUT_S", "6")
    s = load_settings()
    with fake_hub(repo_files, stall_after=2**20) as h:
        monkeypatch.setenv("HF_ENDPOINT", h.url)
        t = time.monotonic()
        with pytest.raises(StageError, match="timed out after 6 s"):
            source("org/tiny", "v1").prepare(env / "prepare.log")
        assert time.monotonic() - t < 60 and hub.recorded(s, "org/tiny", "v1") is None
        path = hub.record_path(s, "org/tiny", "v2")
        with (
            file_lock(path.with_name(path.name + ".lock"), what="another download"),
            pytest.raises(LockTimeout, match="the download of org/tiny is locked by pid"),
        ):
            hub.ensure(s, "org/tiny", "v2", env / "prepare.log", timeout=1)

"""Hub sources without a hub (harness/models/hub.py, sources.HubSource): which files are downloaded, when a
download is allowed, the HF cache look-up at a revision, the record that pins a commit, one message per
failure, and the snapshot folder reaching the vLLM command. tests/integration/test_hub_download.py runs the
real download against a fake hub."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.errors import PlanError
from harness.models import hub
from harness.models.download_worker import wanted
from harness.models.sources import HubSource, hub_models
from harness.result import Artefact
from harness.serve.vllm import VLLMServer
from harness.settings import load_settings
from harness.spec.serving import VLLMServing
from harness.spec.sources import HubModel

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("DQBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv(hub.DOWNLOAD_ENV, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path


def snapshot(root: Path, repo: str, commit: str, ref: str | None = "main", shards: int = 0) -> Path:
    """A complete snapshot in the HF cache layout."""
    base = root / "hf" / "hub" / f"models--{repo.replace('/', '--')}"
    folder = base / "snapshots" / commit
    folder.mkdir(parents=True)
    cfg = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2}
    (folder / "config.json").write_text(json.dumps(cfg | {"num_attention_heads": 4, "vocab_size": 49152}))
    if shards:
        names = [f"model-{i:05d}-of-{shards:05d}.safetensors" for i in range(1, shards + 1)]
        (folder / "model.safetensors.index.json").write_text(
            json.dumps({"weight_map": {"a": names[0], "b": names[-1]}})
        )
        for n in names:
            (folder / n).write_bytes(b"w")
    else:
        (folder / "model.safetensors").write_bytes(b"w" * 10)
    if ref:
        (base / "refs").mkdir(exist_ok=True)
        (base / "refs" / ref).write_text(commit)
    return folder


def test_wanted_skips_duplicate_weights_and_other_runtimes():
    files = {
        "config.json": 1,
        "model.safetensors": 10,
        "pytorch_model.bin": 10,
        "original/consolidated.00.pth": 10,
        "onnx/model.onnx": 5,
        "model.Q4.gguf": 5,
        "tokenizer.json": 2,
    }
    assert sorted(wanted(files)) == ["config.json", "model.safetensors", "tokenizer.json"]
    mistral = {"config.json": 1, "model-00001-of-00001.safetensors": 10, "consolidated.safetensors": 10}
    assert sorted(wanted(mistral)) == ["config.json", "model-00001-of-00001.safetensors"]
    # a repo with torch pickles only keeps them: they are its weights
    assert sorted(wanted({"config.json": 1, "pytorch_model.bin": 10})) == ["config.json", "pytorch_model.bin"]


def test_downloads_allowed_follows_the_variable_then_offline(env):
    s = load_settings()
    assert s.offline and not hub.downloads_allowed(s, {})
    assert hub.downloads_allowed(s, {hub.DOWNLOAD_ENV: "1"})  # ./dq: stages offline, the download step online
    online = load_settings({"DQBENCH_HOME": str(env / "home")})
    assert hub.downloads_allowed(online, {}) and not hub.downloads_allowed(online, {hub.DOWNLOAD_ENV: "0"})


def test_cached_finds_a_revision_by_ref_or_commit_and_refuses_a_partial_snapshot(env):
    folder = snapshot(env, "org/m", COMMIT, ref="v1")
    assert hub.cached("org/m", "v1") == (COMMIT, folder)
    assert hub.cached("org/m", COMMIT) == (COMMIT, folder)
    assert hub.cached("org/m", None) is None  # no refs/main: the default branch was never fetched
    sharded = snapshot(env, "org/big", COMMIT, shards=3)
    assert hub.cached("org/big", None) == (COMMIT, sharded)
    (sharded / "model-00003-of-00003.safetensors").unlink()
    assert hub.cached("org/big", None) is None
    assert "lacks model-00003-of-00003.safetensors" in hub.snapshot_problems(sharded)[0]


def test_offline_source_uses_the_cache_and_names_the_fix_when_absent(env):
    s = load_settings()
    missing = HubSource(HubModel(kind="hub", id="org/absent"), s)
    why = missing.available()
    assert why is not None and "HF_HUB_OFFLINE" in why and "harness prepare" in why and "org/absent" in why
    with pytest.raises(PlanError, match="not complete in the HF cache"):
        missing.prepare(env / "prepare.log")
    folder = snapshot(env, "org/m", COMMIT)
    src = HubSource(HubModel(kind="hub", id="org/m"), s)
    assert src.available() is None
    src.prepare(env / "prepare.log")  # no network: the cache holds it
    assert src.resolve() == str(folder)
    assert src.fingerprint().model_dump(mode="json") == {
        "kind": "hub",
        "id": "org/m",
        "revision": None,
        "commit": COMMIT,
        "path": str(folder),
    }
    rec = json.loads(hub.record_path(s, "org/m", None).read_text())
    assert rec["commit"] == COMMIT and rec["via"] == "cache" and rec["files"]["model.safetensors"] == 10


def test_the_record_pins_the_commit_a_branch_had(env):
    s = load_settings()
    first = snapshot(env, "org/m", COMMIT)
    HubSource(HubModel(kind="hub", id="org/m"), s).prepare(env / "log")
    # the branch moves on (another tool fetched a newer main): dqbench keeps measuring the recorded commit
    newer = snapshot(env, "org/m", "f" * 40, ref=None)
    (newer.parent.parent / "refs" / "main").write_text("f" * 40)
    assert HubSource(HubModel(kind="hub", id="org/m"), s).resolve() == str(first)
    # a recorded file gone: the record no longer counts, the cache is read again
    (first / "model.safetensors").unlink()
    assert hub.recorded(s, "org/m", None) is None


def test_unprepared_source_says_so_and_its_fingerprint_is_the_spec(env):
    src = HubSource(HubModel(kind="hub", id="org/m", revision="v2"), load_settings())
    assert src.fingerprint().model_dump(mode="json") == {"kind": "hub", "id": "org/m", "revision": "v2"}
    with pytest.raises(PlanError, match="not prepared"):
        src.resolve()


def test_record_path_keeps_a_branch_with_a_slash_in_one_file(env):
    p = hub.record_path(load_settings(), "org/m", "refs/pr/1")
    assert p.parent.name == "hub" and p.name == "org--m@refs%2Fpr%2F1.json"


@pytest.mark.parametrize(
    ("kind", "token", "needles"),
    [
        ("gated", False, ["gated", "accept the licence at https://huggingface.co/org/m", "HF_TOKEN", "no token"]),
        ("gated", True, ["not accepted the licence", "https://huggingface.co/org/m"]),
        ("missing", False, ["not found", "spelling", "HF_TOKEN"]),
        ("revision", False, ["no revision 'v9'", "commit sha", "source.revision"]),
        ("auth", True, ["refused the token", "HF_TOKEN"]),
        ("network", False, ["could not reach the hub", "HF_ENDPOINT"]),
    ],
)
def test_each_failure_has_one_message_with_its_fix(monkeypatch, kind, token, needles):
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    msg = hub.message(kind, "org/m", "v9", "detail", token)
    for n in needles:
        assert n in msg, (n, msg)


def test_vllm_serves_the_snapshot_of_the_resolved_commit(env):
    folder = snapshot(env, "org/m", COMMIT, ref="v1")
    src = HubSource(HubModel(kind="hub", id="org/m", revision="v1"), load_settings())
    src.prepare(env / "log")
    art = Artefact(model=src.resolve(), dtype="bfloat16", quantization=None, size_bytes=1, bits_per_weight=16)
    cmd = VLLMServer(VLLMServing(), "/py", "cpu").command(art, 8000, "dq-x", trust_remote_code=False)
    model = cmd[cmd.index("--model") + 1]
    # the revision reaches vLLM as the folder of its commit: vLLM reads local files, never the hub
    assert model == str(folder) and model.endswith(f"snapshots/{COMMIT}")
    assert art.tokenizer_src == model  # the evaluator's tokenizer: the same snapshot


def test_a_hub_student_trains_from_its_revisions_snapshot(env, monkeypatch):
    """The distill stage gets the student's snapshot folder, not the hub id (harness/distill/base.py)."""
    from pydantic import TypeAdapter

    from harness.distill import base
    from harness.spec.students import DistillSpec

    folder = snapshot(env, "org/small", COMMIT, ref="v1")
    monkeypatch.setenv("DQBENCH_COMPRESS_PYTHON", "/usr/bin/python3")
    seen = {}

    def fake_worker(job, log, settings, **kw):  # the training stage: records its input, writes a student
        seen.update(job.spec.student.model_dump(mode="json"), path=job.student_path)
        Path(job.out).mkdir(parents=True)
        (Path(job.out) / "config.json").write_text("{}")
        return job.record_type().model_construct()

    monkeypatch.setattr(base, "run_worker", fake_worker)
    spec = TypeAdapter(DistillSpec).validate_python(
        {
            "name": "s",
            "kind": "logit_kd",
            "max_steps": 1,
            "student": {"kind": "hub", "id": "org/small", "revision": "v1"},
        }
    )
    from harness.distill.data import DataFingerprint

    fp = DataFingerprint(version="v1", files={})
    data = type("D", (), {"fingerprint": lambda self: fp, "corpus_path": lambda self: Path("/c")})()
    base.LogitKD(spec).build(None, "/teacher", {"kind": "t"}, data, load_settings(), env / "distill.log")
    assert seen == {"kind": "hub", "id": "org/small", "revision": "v1", "path": str(folder)}


def test_hub_models_names_each_hub_model_and_hub_student_once():
    from types import SimpleNamespace

    from harness.spec.sources import ModelSpec

    hub_model = ModelSpec(name="t", source={"kind": "hub", "id": "org/t"})
    embedded = ModelSpec(name="e", source={"kind": "embedded"})
    student = SimpleNamespace(name="s", student=HubModel(kind="hub", id="org/s", revision="r"))
    pruned = SimpleNamespace(name="p", student=SimpleNamespace(kind="prune"))
    cells = [
        SimpleNamespace(model=hub_model, student=None),
        SimpleNamespace(model=hub_model, student=student),
        SimpleNamespace(model=embedded, student=pruned),
        SimpleNamespace(model=embedded, student=student),
    ]
    got = hub_models(cells)
    assert [(m.name, m.source.id, m.source.revision) for m in got] == [("t", "org/t", None), ("s", "org/s", "r")]


def test_the_record_file_keeps_its_layout(env):
    """The record is a typed HubRecord now; its file is what it was (the keys, in their order)."""
    s = load_settings()
    snapshot(env, "org/m", COMMIT, ref="v1")
    rec = hub.ensure(s, "org/m", "v1", env / "log")
    raw = json.loads(hub.record_path(s, "org/m", "v1").read_text())
    assert list(raw) == ["id", "revision", "commit", "path", "files", "bytes", "via"]
    assert raw == rec.model_dump(mode="json") and raw["revision"] == "v1" and raw["bytes"] == sum(raw["files"].values())
    assert hub.recorded(s, "org/m", "v1") == rec

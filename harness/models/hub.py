"""Hub models on this machine: the record of a downloaded snapshot, the cache look-up, and the download step.

Why a download step: vLLM given a hub id would fetch the weights inside its start-up timeout (600 s, a 16 GB
checkpoint does not make it), and each stage would resolve a branch on its own. So a hub source is
downloaded once, before anything is served (`harness prepare`, the start of `harness run`, a cell's prepare
step), at a branch or tag resolved to its commit; every stage then loads the snapshot folder
(`.../snapshots/<commit>`), the same files for vLLM, llama.cpp's converter, the compressors, the distiller and
the evaluator's tokenizer, all offline.

Offline mode: `./dq` keeps HF_HUB_OFFLINE=1 for everything it runs (the embedded default behaves as it always
did) and, unless you set HF_HUB_OFFLINE yourself, exports DQBENCH_HUB_DOWNLOAD=1: the download worker, and
only it, runs with HF_HUB_OFFLINE=0. Set HF_HUB_OFFLINE=1 yourself (or DQBENCH_HUB_DOWNLOAD=0) and nothing is
fetched: a hub model must then be in the HF cache already (any tool's download counts).

The record (`HubRecord`, `<DQBENCH_HOME>/models/hub/<org>--<name>@<revision>.json`, written last) pins the
commit a revision resolved to the first time: cells of one matrix, and reruns days later, measure the same
weights even if the branch moves. Delete it, or pin a new `revision`, to move on.

This module is the mechanism (the record, the cache, the download worker, harness/models/download_worker.py);
the source a matrix names (`HubSource`) and the preparation of a run's hub models before any cell are in
harness/models/sources.py, which uses it: the dependency runs one way. No heavy imports here.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, ValidationError

from harness.errors import PlanError
from harness.locks import file_lock, read_json, wait_reporter
from harness.models.download_worker import DownloadJob, Snapshot
from harness.proc import run_worker, write_json_atomic
from harness.settings import Settings

COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
DOWNLOAD_ENV = "DQBENCH_HUB_DOWNLOAD"


class HubRecord(BaseModel):
    """A hub model on this machine: `id` at `revision` is `commit`, whose complete snapshot is the folder
    `path` with `files` (name -> size); `via`: downloaded by dqbench, or found in the HF cache."""

    model_config = ConfigDict(extra="forbid")

    id: str
    revision: str | None
    commit: str
    path: str
    files: dict[str, int]
    bytes: int
    via: Literal["cache", "download"]


def downloads_allowed(settings: Settings, env: dict[str, str] | None = None) -> bool:
    """Whether the download step may reach the hub: DQBENCH_HUB_DOWNLOAD when set, else not offline."""
    value = (os.environ if env is None else env).get(DOWNLOAD_ENV, "")
    if value in ("0", "1"):
        return value == "1"
    return not settings.offline


def hub_cache(env: dict[str, str] | None = None) -> Path:
    """huggingface_hub's cache folder, from the same variables it reads."""
    e = os.environ if env is None else env
    if e.get("HF_HUB_CACHE"):
        return Path(e["HF_HUB_CACHE"]).expanduser()
    return Path(e.get("HF_HOME") or Path.home() / ".cache" / "huggingface").expanduser() / "hub"


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def record_path(settings: Settings, repo: str, revision: str | None) -> Path:
    return settings.models_dir / "hub" / f"{repo.replace('/', '--')}@{quote(revision or 'main', safe='')}.json"


def snapshot_problems(folder: Path) -> list[str]:
    """What a snapshot folder lacks to be served: config.json, weights, a shard its index names."""
    if not (folder / "config.json").is_file():
        return [f"{folder} has no config.json"]
    problems = []
    for index in folder.glob("*.index.json"):
        shards = set((read_json(index) or {}).get("weight_map", {}).values())
        problems += [
            f"{folder} lacks {s} (named by {index.name})" for s in sorted(shards) if not (folder / s).is_file()
        ]
    if not any(folder.glob(p) for p in ("*.safetensors", "*.bin", "*.pt", "*.pth")):
        problems.append(f"{folder} has no weights (*.safetensors, *.bin)")
    return problems


def recorded(settings: Settings, repo: str, revision: str | None) -> HubRecord | None:
    """The record of a finished download whose files are all still there, else None (a record that does not
    read as one, too: the model is then looked up again and the record written anew)."""
    raw = read_json(record_path(settings, repo, revision))
    if not raw or not raw.get("path"):
        return None
    try:
        rec = HubRecord.model_validate(raw)
    except ValidationError:
        return None
    folder = Path(rec.path)
    for name, size in rec.files.items():
        f = folder / name
        if not f.is_file() or (size and f.stat().st_size != size):
            return None
    return rec if not snapshot_problems(folder) else None


def cached(repo: str, revision: str | None, env: dict[str, str] | None = None) -> tuple[str, Path] | None:
    """(commit, snapshot folder) of `repo` at `revision` complete in the HF cache, looked up the way
    huggingface_hub does offline (a commit names its folder, a branch or tag its `refs/` file); else None."""
    root = hub_cache(env) / f"models--{repo.replace('/', '--')}"
    rev = revision or "main"
    commit = rev if COMMIT_RE.match(rev) else None
    if commit is None:
        ref = root / "refs" / rev
        commit = ref.read_text().strip() if ref.is_file() else None
    if commit is None:
        return None
    folder = root / "snapshots" / commit
    return (commit, folder) if folder.is_dir() and not snapshot_problems(folder) else None


def message(kind: str, repo: str, revision: str | None, detail: str, token: bool) -> str:
    """One clear message per failure the user must fix: what, why, and the fix."""
    page, rev = f"{endpoint()}/{repo}", revision or "the default branch"
    login = "run `hf auth login` (or `huggingface-cli login`) or set HF_TOKEN=hf_..."
    if kind == "gated":
        why = (
            "a token was sent, so its account has most likely not accepted the licence yet"
            if token
            else "no token was found (HF_TOKEN unset, no `hf auth login`)"
        )
        return (
            f"hub model {repo!r} is gated: downloads need an accepted licence and a token; {why}. Fix: accept the "
            f"licence at {page} while logged in, then {login}, and run `harness prepare` again"
        )
    if kind == "missing":
        return (
            f"hub model {repo!r} was not found at {endpoint()}: check the id's spelling ({page}); if it is private, "
            f"{login} with an account that can read it"
        )
    if kind == "revision":
        return (
            f"hub model {repo!r} has no revision {rev!r}: use a branch, a tag or a full commit sha of "
            f"{page}/commits/main in `source.revision`"
        )
    if kind == "auth":
        return f"hub model {repo!r}: the hub refused the token ({detail}); {login} with a valid token"
    if kind == "network":
        return (
            f"hub model {repo!r} ({revision or 'main'}): could not reach the hub at {endpoint()} ({detail}); "
            "check the network, a proxy or HF_ENDPOINT, or download it on a machine that is online and copy "
            f"the HF cache ({hub_cache()}) here"
        )
    return f"hub model {repo!r} ({revision or 'main'}): {detail}"


def offline_message(repo: str, revision: str | None) -> str:
    return (
        f"hub model {repo!r} ({revision or 'main'}) is not complete in the HF cache ({hub_cache()}) and downloads are "
        f"off (HF_HUB_OFFLINE=1 set by you, or {DOWNLOAD_ENV}=0): run `HF_HUB_OFFLINE= ./dq harness prepare "
        "MATRIX` once with network access, or use a `local` source"
    )


def ensure(settings: Settings, repo: str, revision: str | None, log: Path, timeout: float | None = None) -> HubRecord:
    """The record of `repo` at `revision` on this machine, downloading it first when needed and allowed.
    Under a lock: cells side by side (Ray) download a model once. `timeout` (default: the machine's
    DQBENCH_DOWNLOAD_TIMEOUT_S) bounds the download and the wait for another process's download of it."""
    rec = recorded(settings, repo, revision)
    if rec is not None:
        return rec
    timeout = settings.download_timeout_s if timeout is None else timeout
    path = record_path(settings, repo, revision)
    report = wait_reporter(log)
    lock = path.with_name(path.name + ".lock")
    with file_lock(lock, what=f"the download of {repo}", on_wait=report, timeout=timeout):
        rec = recorded(settings, repo, revision)
        if rec is not None:
            return rec
        hit = cached(repo, revision)
        via: Literal["cache", "download"]
        if hit is not None:  # in the HF cache already (a download by another tool, or offline on purpose)
            commit, folder = hit
            files = {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}
            snap, via = Snapshot(commit=commit, path=str(folder), files=files, bytes=sum(files.values())), "cache"
        elif not downloads_allowed(settings):
            raise PlanError(offline_message(repo, revision))
        else:
            snap, via = _download(settings, repo, revision, log, timeout), "download"
        rec = HubRecord(id=repo, revision=revision, **snap.model_dump(), via=via)
        write_json_atomic(path, rec.model_dump(mode="json"))  # last: a record names a complete snapshot
        return rec


def _download(settings: Settings, repo: str, revision: str | None, log: Path, timeout: float | None) -> Snapshot:
    report = wait_reporter(log)
    report(
        f"downloading {repo}@{revision or 'main'} from {endpoint()} into {hub_cache()} "
        "(if interrupted, the files finished are kept)"
    )
    got = run_worker(
        DownloadJob(repo=repo, revision=revision or None),
        log,
        settings,
        stage="prepare",
        timeout=timeout,
        # the one step allowed online; the other offline flags stay as the caller set them
        # (its progress goes through DQBENCH_PROGRESS_FILE; huggingface_hub's own bars would fill the log)
        env={"HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_PROGRESS_BARS": "1"},
        credentials=True,  # the one process that gets the hub token (harness/credentials.py)
    )
    if got.refusal is not None:
        r = got.refusal
        raise PlanError(message(r.kind, repo, revision, r.detail, r.token))
    snap = got.snapshot
    if snap is None:
        raise PlanError(f"hub model {repo!r}: the download worker returned neither a snapshot nor a refusal")
    problems = snapshot_problems(Path(snap.path))
    if problems:
        raise PlanError(f"hub model {repo!r}: the downloaded snapshot cannot be served: " + "; ".join(problems))
    report(f"{repo}@{revision or 'main'} = {snap.commit}: {snap.bytes / 2**20:.1f} MiB in {snap.path}")
    return snap

"""Worker: download a hub model's snapshot at a revision into the HF cache (huggingface_hub), with progress.
Started by the download step (harness/models/hub.py `ensure`) in the serving environment, with
HF_HUB_OFFLINE=0: this is the one step that may reach the hub (see harness/models/hub.py for why).

`DownloadJob` in (the repo, the revision: None for the default branch), `Download` back: the `snapshot`
downloaded (its commit, folder, files and their sizes) or, for a failure the user must fix, the hub's
`refusal` ("gated" | "missing" | "revision" | "auth" | "network", the detail, whether a token was sent); the
parent words the message (hub.message). Resumable, as far as huggingface_hub (2.x) allows: a dropped
connection is resumed with a Range request within the run, files finished before an interruption are kept
(a checkpoint's shards are files: a rerun fetches only those not done), and Xet-backed repos reuse the
chunks in the Xet cache; but a file cut off by a killed process starts again (its partial copy is named
per process, `blobs/<etag>.<uuid>.incomplete`, and cannot be continued; stale ones are deleted). The token is
huggingface_hub's own (HF_TOKEN, else the one `hf auth login` stored). Importable without huggingface_hub
(the parent builds the job with it).
"""

from __future__ import annotations

import fnmatch
import re
import threading
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from harness.jobs import Job, Record
from harness.proc import WorkerProgress

RefusalKind = Literal["gated", "missing", "revision", "auth", "network"]


class Snapshot(BaseModel):
    """A complete snapshot folder of one commit, as the hub record stores it (harness/models/hub.HubRecord)."""

    model_config = ConfigDict(extra="forbid")

    commit: str
    path: str
    files: dict[str, int]  # path in the repo -> size in bytes, the files dqbench downloads (`wanted`)
    bytes: int


class HubRefusal(BaseModel):
    """A hub failure the user must fix (a gated repo, a misspelt id ...): the parent words it (hub.message)."""

    model_config = ConfigDict(extra="forbid")

    kind: RefusalKind
    detail: str
    token: bool  # whether a token was sent (a gated repo's message differs)


class Download(Record):
    """One of the two: the snapshot downloaded, or why the hub refused it."""

    snapshot: Snapshot | None = None
    refusal: HubRefusal | None = None


class DownloadJob(Job[Download]):
    worker = "harness.models.download_worker:work"

    repo: str
    revision: str | None = None  # a branch, a tag or a commit; None: the default branch


# Files no serving engine or stage of dqbench loads: a Llama repo's `original/` holds a second full copy of the
# weights (consolidated.*.pth), and exports for other runtimes can be as large as the checkpoint itself.
SKIP = ("original/*", "*.gguf", "*.onnx", "*.onnx_data", "onnx/*", "*.msgpack", "*.h5", "*.ot", "*.tflite", "coreml/*")
# Torch pickles duplicate the safetensors when a repo has both (vLLM and transformers prefer safetensors).
PICKLES = ("*.bin", "*.pt", "*.pth")


def wanted(files: dict[str, int]) -> dict[str, int]:
    """The files of a repo listing {path: size} that dqbench downloads."""
    keep = {p: s for p, s in files.items() if not any(fnmatch.fnmatch(p, pat) for pat in SKIP)}
    if any(p.endswith(".safetensors") for p in keep):
        keep = {p: s for p, s in keep.items() if not any(fnmatch.fnmatch(p, pat) for pat in PICKLES)}
    # Mistral repos carry their weights twice: the transformers layout (model*.safetensors, what dqbench's
    # stages load) and Mistral's own (consolidated.safetensors)
    if any(fnmatch.fnmatch(p, "model*.safetensors") for p in keep):
        keep = {p: s for p, s in keep.items() if not fnmatch.fnmatch(p, "consolidated*.safetensors")}
    return keep


def on_disk(repo_dir: Path, snapshot: Path, files: dict[str, int]) -> int:
    """Bytes of `files` present: the finished ones in the snapshot plus the partial blobs being written."""
    done = sum(size for name, size in files.items() if (snapshot / name).is_file())
    return done + sum(p.stat().st_size for p in (repo_dir / "blobs").glob("*.incomplete") if p.is_file())


COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
STALE_S = 120  # a partial file nobody wrote to for this long is a killed download's leftover


def drop_stale(repo_dir: Path) -> int:
    """Delete partial files left by killed downloads (never continued, see above); bytes freed."""
    freed, now = 0, time.time()
    for p in (repo_dir / "blobs").glob("*.incomplete"):
        try:
            st = p.stat()
            if now - st.st_mtime > STALE_S:
                p.unlink()
                freed += st.st_size
        except OSError:
            pass
    return freed


def _classify(exc: BaseException) -> RefusalKind | None:
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    # GatedRepoError is a RepositoryNotFoundError: ask for it first
    if isinstance(exc, GatedRepoError):
        return "gated"
    if isinstance(exc, RevisionNotFoundError):
        return "revision"
    if isinstance(exc, RepositoryNotFoundError):
        return "missing"
    if isinstance(exc, HfHubHTTPError) and exc.response is not None and exc.response.status_code in (401, 403):
        return "auth"
    if isinstance(exc, LocalEntryNotFoundError | ConnectionError | TimeoutError):
        return "network"
    name = type(exc).__name__
    return "network" if name in ("ConnectError", "ConnectTimeout", "ReadTimeout", "ProxyError") else None


def work(job: DownloadJob) -> Download:
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.file_download import repo_folder_name
    from huggingface_hub.hf_api import RepoFile
    from huggingface_hub.utils import get_token

    repo, revision = job.repo, job.revision or None
    api = HfApi()
    try:
        # resolve a branch or tag to its commit first, and download at the commit: the files, the record and the
        # result then name one immutable snapshot even if the branch moves during a long download
        commit = api.repo_info(repo, revision=revision).sha
        assert commit, f"the hub returned no commit for {repo}@{revision}"
        listing = {
            f.path: int(f.size or 0)
            for f in api.list_repo_tree(repo, revision=commit, recursive=True)
            if isinstance(f, RepoFile)
        }
        files = wanted(listing)
        print(f"{repo}@{revision or 'default branch'} = {commit}: {len(files)} of {len(listing)} files", flush=True)
        from huggingface_hub import constants

        repo_dir = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo, repo_type="model")
        snapshot = repo_dir / "snapshots" / commit
        if freed := drop_stale(repo_dir):
            print(f"deleted {freed / 2**20:.1f} MiB of partial files left by an interrupted download", flush=True)
        total = sum(files.values())
        mib = 2**20
        report = WorkerProgress(f"download {repo}", "MiB", total=round(total / mib, 1), every=1.0)
        stop = threading.Event()

        def poll() -> None:  # reads the cache folder: independent of huggingface_hub's progress-bar internals
            while not stop.wait(1.0):
                report.update(round(on_disk(repo_dir, snapshot, files) / mib, 1))

        watcher = threading.Thread(target=poll, daemon=True)
        watcher.start()
        try:
            path = snapshot_download(repo, revision=commit, allow_patterns=sorted(files), max_workers=4)
        finally:
            stop.set()
            watcher.join(timeout=5)
        report.update(round(total / mib, 1), force=True)
        # name the commit under the branch or tag too, as huggingface_hub does when it resolves one itself: an
        # offline look-up of this revision (ours or any tool's) then finds the snapshot
        ref = repo_dir / "refs" / (revision or "main")
        if not COMMIT_RE.match(revision or "") and (not ref.is_file() or ref.read_text().strip() != commit):
            ref.parent.mkdir(parents=True, exist_ok=True)
            tmp = ref.with_name(ref.name + ".dqbench-tmp")
            tmp.write_text(commit)
            tmp.replace(ref)
    except Exception as exc:  # a known hub refusal becomes a result the parent words
        kind = _classify(exc)
        if kind is None:
            raise
        print(f"{type(exc).__name__}: {exc}", flush=True)
        detail = f"{type(exc).__name__}: {str(exc).strip()[:600]}"
        return Download(refusal=HubRefusal(kind=kind, detail=detail, token=bool(get_token())))
    return Download(snapshot=Snapshot(commit=commit, path=path, files=files, bytes=total))

"""A fake Hugging Face hub speaking the part of the hub's HTTP API that huggingface_hub's `snapshot_download`
uses: model info at a revision (`/api/models/ID/revision/REV` -> sha), the recursive file listing
(`/api/models/ID/tree/COMMIT`), and file HEAD/GET (`/ID/resolve/REV/PATH`) with ETag, X-Repo-Commit and
Content-Length, Range requests answered 206 (resumed downloads). Errors as the hub words them, in the
X-Error-Code header huggingface_hub maps to its exceptions: a gated repo answers 401 (no token) or 403 (a
token whose account did not accept the licence) with `GatedRepo`, a missing repo 404 `RepoNotFound`, a
missing revision 404 `RevisionNotFound`.

`stall_after=N`: the first GET of a file larger than N bytes sends its full Content-Length, N bytes, then
stalls (for a test that kills the client mid-download, as Ctrl-C or a lost machine would); `drop_after=N`:
the same, but the connection is closed after the N bytes (a dropped connection). The next request of that
file is served normally. Every request is logged (`requests`) for tests to assert on. Point HF_ENDPOINT at `url`.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

LFS_MIN = 1024  # files from this size are served as LFS files (the hub's X-Linked-Etag = sha256)


@dataclass
class FakeRepo:
    id: str
    commits: dict[str, Path]  # commit sha -> folder holding that commit's files
    refs: dict[str, str] = field(default_factory=dict)  # branch or tag -> commit sha
    gated: bool = False
    accepted_tokens: tuple[str, ...] = ()  # tokens whose account accepted the licence (a gated repo)

    def commit_of(self, rev: str) -> str | None:
        return rev if rev in self.commits else self.refs.get(rev)


def _digests(path: Path) -> tuple[str, str]:
    """(git blob sha1, sha256) of a file."""
    data = path.read_bytes()
    blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    return blob, hashlib.sha256(data).hexdigest()


class FakeHub:
    def __init__(self, repos: list[FakeRepo], stall_after: int | None = None, drop_after: int | None = None) -> None:
        self.repos = {r.id: r for r in repos}
        self.stall_after, self.drop_after = stall_after, drop_after
        self.requests: list[dict] = []
        self._stalled: set[str] = set()
        self._digest_cache: dict[Path, tuple[str, str]] = {}
        self._stop = threading.Event()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet: tests read `requests`
                return

            def do_HEAD(self) -> None:
                hub._handle(self, head=True)

            def do_GET(self) -> None:
                hub._handle(self, head=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()

    def digests(self, path: Path) -> tuple[str, str]:
        if path not in self._digest_cache:
            self._digest_cache[path] = _digests(path)
        return self._digest_cache[path]

    # ------------------------------------------------------------------ routing
    def _handle(self, h: BaseHTTPRequestHandler, head: bool) -> None:
        url = urlparse(h.path)
        path = unquote(url.path)
        auth = h.headers.get("Authorization") or ""
        token = auth.removeprefix("Bearer ").strip() or None
        self.requests.append(
            {"method": h.command, "path": path, "query": url.query, "range": h.headers.get("Range"), "token": token}
        )
        try:
            if path.startswith("/api/models/"):
                self._api(h, path.removeprefix("/api/models/"), token)
            elif "/resolve/" in path:
                self._resolve(h, path.lstrip("/"), token, head)
            else:
                self._error(h, 404, "EntryNotFound", "no such route")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _error(self, h: BaseHTTPRequestHandler, status: int, code: str, msg: str) -> None:
        body = json.dumps({"error": msg}).encode()
        h.send_response(status)
        h.send_header("X-Error-Code", code)
        h.send_header("X-Error-Message", msg)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)

    def _json(self, h: BaseHTTPRequestHandler, doc: object) -> None:
        body = json.dumps(doc).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _repo(self, h: BaseHTTPRequestHandler, rest: str) -> tuple[FakeRepo | None, str]:
        parts = rest.split("/")
        repo = self.repos.get("/".join(parts[:2]))
        if repo is None:
            self._error(h, 404, "RepoNotFound", "Repository not found")
        return repo, "/".join(parts[2:])

    def _gate(self, h: BaseHTTPRequestHandler, repo: FakeRepo, token: str | None) -> bool:
        """True when the request may go on; else answers as the hub does for a gated repo."""
        if not repo.gated or token in repo.accepted_tokens:
            return True
        if token is None:
            self._error(h, 401, "GatedRepo", f"Access to model {repo.id} is restricted. You must be authenticated.")
        else:
            self._error(h, 403, "GatedRepo", f"Access to model {repo.id} is restricted and you are not in the list.")
        return False

    def _api(self, h: BaseHTTPRequestHandler, rest: str, token: str | None) -> None:
        repo, tail = self._repo(h, rest)
        if repo is None:
            return
        kind, _, rev = tail.partition("/")
        if kind == "":  # model info without a revision: the default branch
            kind, rev = "revision", "main"
        if kind == "revision":
            commit = repo.commit_of(rev)
            if commit is None:
                self._error(h, 404, "RevisionNotFound", f"Invalid rev id: {rev}")
                return
            files = sorted(p for p in repo.commits[commit].rglob("*") if p.is_file())
            siblings = [{"rfilename": str(p.relative_to(repo.commits[commit]))} for p in files]
            self._json(
                h,
                {
                    "id": repo.id,
                    "modelId": repo.id,
                    "sha": commit,
                    "siblings": siblings,
                    "private": False,
                    "gated": "manual" if repo.gated else False,
                },
            )
            return
        if kind == "tree":
            commit = repo.commit_of(rev.split("/")[0])
            if commit is None:
                self._error(h, 404, "RevisionNotFound", f"Invalid rev id: {rev}")
                return
            root, entries = repo.commits[commit], []
            for p in sorted(q for q in root.rglob("*") if q.is_file()):
                blob, sha256 = self.digests(p)
                e = {"type": "file", "path": str(p.relative_to(root)), "size": p.stat().st_size, "oid": blob}
                if p.stat().st_size >= LFS_MIN:
                    e["lfs"] = {"oid": sha256, "size": p.stat().st_size, "pointerSize": 134}
                entries.append(e)
            self._json(h, entries)
            return
        self._error(h, 404, "EntryNotFound", f"unknown api route {tail}")

    def _resolve(self, h: BaseHTTPRequestHandler, rest: str, token: str | None, head: bool) -> None:
        repo_part, _, file_part = rest.partition("/resolve/")
        repo = self.repos.get(repo_part)
        if repo is None:
            self._error(h, 404, "RepoNotFound", "Repository not found")
            return
        if not self._gate(h, repo, token):
            return
        rev, _, name = file_part.partition("/")
        commit = repo.commit_of(rev)
        if commit is None:
            self._error(h, 404, "RevisionNotFound", f"Invalid rev id: {rev}")
            return
        f = repo.commits[commit] / name
        if not f.is_file():
            self._error(h, 404, "EntryNotFound", f"{name} does not exist at {rev}")
            return
        size = f.stat().st_size
        blob, sha256 = self.digests(f)
        start = 0
        rng = h.headers.get("Range")
        if rng and not head and rng.startswith("bytes="):
            start = int(rng.removeprefix("bytes=").split("-")[0] or 0)
        h.send_response(206 if start else 200)
        h.send_header("X-Repo-Commit", commit)
        etag = sha256 if size >= LFS_MIN else blob
        h.send_header("ETag", f'"{etag}"')
        if size >= LFS_MIN:
            h.send_header("X-Linked-Etag", f'"{sha256}"')
            h.send_header("X-Linked-Size", str(size))
        h.send_header("Accept-Ranges", "bytes")
        if start:
            h.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        h.send_header("Content-Length", str(size - start))
        h.end_headers()
        if head:
            return
        cut = self.stall_after if self.stall_after is not None else self.drop_after
        cut_now = cut is not None and size > cut and not start and name not in self._stalled
        with open(f, "rb") as src:
            src.seek(start)
            if cut_now:
                self._stalled.add(name)
                h.wfile.write(src.read(cut))
                h.wfile.flush()
                if self.stall_after is None:  # drop: close the connection short of Content-Length
                    h.close_connection = True
                    return
                # stall: hold the connection open, sending nothing, until the client is killed or the hub stops
                while not self._stop.wait(0.2):
                    pass
                return
            while chunk := src.read(1 << 20):
                h.wfile.write(chunk)


def serve_forever(repos: list[FakeRepo]) -> None:  # pragma: no cover - manual use
    with FakeHub(repos) as hub:
        print(hub.url, flush=True)
        while True:
            time.sleep(3600)


def main() -> None:  # pragma: no cover - manual use and end-to-end runs
    """`python -m tests.fakes.hub_server --repo ORG/NAME --dir FOLDER --commit SHA [--ref main] [--ref v1]`:
    serve FOLDER as that repo at that commit (each --ref names it too), print the URL, run until killed."""
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", required=True)
    ap.add_argument("--dir", required=True, type=Path)
    ap.add_argument("--commit", required=True)
    ap.add_argument("--ref", action="append", default=["main"])
    a = ap.parse_args()
    serve_forever([FakeRepo(a.repo, {a.commit: a.dir}, refs=dict.fromkeys(a.ref, a.commit))])


if __name__ == "__main__":  # pragma: no cover
    main()

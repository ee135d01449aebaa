"""The hub token goes where a download needs it and nowhere else (harness/credentials.py), shown on a whole
cell: `harness run` of a gated hub model (a fake hub, tests/fakes/hub_server.py, that refuses any other token)
on the fake engine, with a fake token. The download worker gets the token (the gated model downloads); then
every file under the results folder (results, index, logs, work), DQBENCH_HOME, the HF cache and the test's
own folder, and the environment and command line of every process but `harness` itself (which the user gave
it to) and the download worker with its guard, read while the cell runs, hold zero copies of it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.fakes.hub_server import FakeHub, FakeRepo
from tests.fakes.plugins import fake_run

TOKEN = "hf_FAKEsecretTOKEN0123456789abcdefXYZ"
COMMIT = "3" * 40


def _files_holding(root: Path, needle: bytes) -> list[str]:
    hits = []
    for p in root.rglob("*"):
        try:
            if p.is_file() and not p.is_symlink() and needle in p.read_bytes():
                hits.append(str(p))
        except OSError:
            continue
    return hits


def _processes(needle: bytes, but: set[int]) -> list[tuple[int, bytes, bool]]:
    """Every readable process but `but`: (pid, command line, whether its environment as started or its
    command line holds `needle`)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) in but:
            continue
        try:
            cmd, environ = (d / "cmdline").read_bytes(), (d / "environ").read_bytes()
        except OSError:
            continue
        out.append((int(d.name), cmd, needle in environ or needle in cmd))
    return out


@pytest.mark.slow
def test_a_whole_cell_leaves_no_copy_of_the_hub_token(tmp_path):
    from tests.integration.test_runner import host_file

    host, _ = host_file(tmp_path, "a", ["avx", "avx2"])
    env, matrix = fake_run(
        tmp_path,
        "secret",
        1,
        {
            "input_tokens": 16,
            "output_tokens": 4,
            "warmup_requests": 1,
            "profiles": [{"kind": "synchronous", "requests": 2}],
        },
    )
    # the gated repo: the embedded model's config and tokenizer (the fake engine loads no weights)
    remote = tmp_path / "remote"
    shutil.copytree(tmp_path / "model", remote)
    (remote / "model.safetensors").write_bytes(os.urandom(4096))
    doc = yaml.safe_load(matrix.read_text())
    doc["models"] = [{"name": "gated", "source": {"kind": "hub", "id": "org/secret-model"}}]
    matrix.write_text(yaml.safe_dump(doc))
    results, home, hf = tmp_path / "results", tmp_path / "home", tmp_path / "hf"
    repo = FakeRepo("org/secret-model", {COMMIT: remote}, refs={"main": COMMIT}, gated=True, accepted_tokens=(TOKEN,))
    with FakeHub([repo]) as hub:
        env = dict(
            env,
            HF_TOKEN=TOKEN,
            HF_HOME=str(hf),
            DQBENCH_HOME=str(home),
            DQBENCH_RESULTS=str(results),
            DQBENCH_HOST_CAPS=str(host),
            DQBENCH_HOST_CAPS_RUN="1",
            HF_HUB_OFFLINE="1",
            DQBENCH_HUB_DOWNLOAD="1",
            HF_ENDPOINT=hub.url,
            FAKE_EVAL_SLEEP="4",
        )
        env.pop("HUGGING_FACE_HUB_TOKEN", None)
        env.pop("HF_HUB_CACHE", None)
        p = subprocess.Popen(
            [sys.executable, "-m", "harness", "run", str(matrix)],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        holders: dict[int, bytes] = {}
        servers: set[int] = set()
        try:
            deadline = time.monotonic() + 400
            while p.poll() is None and time.monotonic() < deadline:
                # the process table while the cell runs: its server, guards and workers
                for pid, cmd, has in _processes(TOKEN.encode(), but={p.pid}):
                    if has:
                        holders[pid] = cmd
                    elif b"tests.fakes.openai_server" in cmd:
                        servers.add(pid)
                time.sleep(0.3)
            out, err = p.communicate(timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
        asked = [r for r in hub.requests if r["path"].startswith("/org/secret-model/resolve")]
    assert p.returncode == 0, err.decode()[-3000:]
    # the download worker had the token: the gated files came with it
    assert asked and {r["token"] for r in asked} == {TOKEN}
    cells = [json.loads(x.read_text()) for x in (results / "cells").glob("*.json")]
    assert [c["status"] for c in cells] == ["done"], [c.get("reason") for c in cells]
    # the process table: the fake engine's server was seen running without it, and the only processes that
    # ever held it were the download worker and its guard (its command line names the download job)
    assert servers
    assert holders and all(b"download_worker" in cmd for cmd in holders.values()), holders
    needle = TOKEN.encode()
    for root in (results, home, hf, tmp_path):
        assert _files_holding(root, needle) == [], root
    assert needle not in out and needle not in err

"""What a dqbench run listens on, read with `ss` (issue #30). vLLM's ports (its HTTP server, and the
distributed store and engine sockets that VLLM_HOST_IP places) are all on loopback:
tests/e2e/test_loopback_vllm.py starts a real vLLM. A local Ray instance cannot be kept to loopback (Ray 2.60
binds its gRPC servers on every interface and turns 127.0.0.1 into the outward address): shown here, with
the guard dqbench keeps instead, Ray's token authentication (a local instance is refused without it)."""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
import tempfile

import pytest

from harness.errors import DQError


def listeners(pids: set[int]) -> list[tuple[str, str]]:
    """(bound address, process name) of every TCP/UDP socket the processes `pids` listen on, as `ss` says."""
    if shutil.which("ss") is None:
        pytest.skip("no `ss` here (iproute2)")
    out = subprocess.run(["ss", "-ltunpH"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        users = re.findall(r'\("([^"]+)",pid=(\d+),', line)
        if any(int(pid) in pids for _, pid in users):
            found.append((line.split()[4].rsplit(":", 1)[0].strip("[]"), users[0][0]))
    return found


def is_loopback(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr.split("%")[0].removeprefix("::ffff:")).is_loopback
    except ValueError:
        return False


def descendants(pid: int) -> set[int]:
    import psutil

    return {pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))}


def test_a_local_ray_instance_is_refused_without_its_token_authentication(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    from harness.executors.ray import RayExecutor
    from harness.settings import load_settings

    monkeypatch.setenv("DQBENCH_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    with pytest.raises(DQError, match="listens on every interface"):
        RayExecutor(load_settings(), num_cpus=1)._init()


@pytest.mark.slow
def test_what_a_local_ray_instance_listens_on(tmp_path, monkeypatch, capsys):
    ray = pytest.importorskip("ray")
    from harness.executors.ray import RayExecutor
    from harness.settings import load_settings

    monkeypatch.setenv("DQBENCH_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("RAY_TMPDIR", tempfile.mkdtemp(prefix="dqr-", dir="/tmp"))  # short: Ray's socket paths
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    ex = RayExecutor(load_settings(), num_cpus=1)
    try:
        ex._init()
        found = listeners(descendants(os.getpid()) - {os.getpid()})
        assert found, "the local Ray instance listens on nothing?"
        outward = sorted({f"{p} on {a}" for a, p in found if not is_loopback(a)})
        with capsys.disabled():
            print(f"\nlocal Ray listeners not on loopback ({len(outward)}): {outward}")
        # what guards them: Ray's token, generated for the instance (RAY_AUTH_MODE unset = token)
        token = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.expanduser("~/.ray/auth_token")
        assert os.path.isfile(token) and os.path.getsize(token) > 0
    finally:
        ray.shutdown()

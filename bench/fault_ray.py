"""A real Ray cluster on this machine for bench/faults.py's Ray scenarios: a head that runs no cell (no `dq_perf`
slot: it holds the GCS, the driver's relay and the storage check) and two worker nodes with one slot each, every
node a `ray start --block` of its own in its own session, so a node can be stopped alone (SIGTERM to its `ray
start`: Ray drains it and ends its processes) and every process of the cluster carries the cluster's tag in its
environment (found by /proc, as bench/faults.py finds a run's).

Ports are given explicitly (several nodes on one machine would otherwise share Ray's fixed defaults), and the
temporary folder is short (Ray's socket paths have a length limit). The cluster is ended by its processes' pids,
never `ray stop` (which would stop every Ray on the machine).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

RAY = [sys.executable, "-m", "ray.scripts.scripts"]
START_S = 180.0


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def parent_of(pid: int) -> int | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(raw[raw.rfind(")") + 2 :].split()[1])


@dataclass
class RayCluster:
    env: dict[str, str]  # every node's environment (the scenario's, with the cluster's tag)
    log_dir: Path
    nodes: dict[str, subprocess.Popen] = field(default_factory=dict)  # name -> its `ray start --block`
    tmp: Path | None = None
    address: str = ""

    def start(self) -> str:
        """Start the head and nodes a, b; the cluster's address once both nodes have joined. Every node and the
        driver run with Ray's token authentication off, as tests/integration/test_ray_cluster.py does: otherwise a
        token file left in ~/.ray by another Ray instance turns it on for some processes and not others, and the
        nodes never join (the driver joins an existing cluster by address, which harness/executors/ray.py allows).

        Each node is started once the one before it has joined: nodes of one machine share the session folder and
        each takes the first free `sockets/raylet.N` name there, so two started together take the same one and the
        second raylet dies (`bind: Address already in use`; measured twice in a row on a busy 2-core host, the
        cluster never reached 3 nodes)."""
        self.env = {**self.env, "RAY_AUTH_MODE": "disabled"}
        self.tmp = Path(tempfile.mkdtemp(prefix="dqfr-", dir="/tmp"))
        gcs, client, *ports = free_ports(2 + 3 * 6)
        self.address = f"127.0.0.1:{gcs}"
        for i, name in enumerate(("head", "a", "b")):
            p = ports[6 * i : 6 * i + 6]
            head = ["--head", f"--port={gcs}", "--include-dashboard=false", f"--ray-client-server-port={client}"]
            args = [
                "start",
                "--block",
                *(head if name == "head" else [f"--address={self.address}"]),
                "--num-cpus=1" if name == "head" else "--num-cpus=2",
                *([] if name == "head" else ['--resources={"dq_perf": 1}']),
                f"--temp-dir={self.tmp / 'ray'}",
                f"--node-manager-port={p[0]}",
                f"--object-manager-port={p[1]}",
                f"--dashboard-agent-listen-port={p[2]}",
                f"--dashboard-agent-grpc-port={p[3]}",
                f"--metrics-export-port={p[4]}",
                f"--runtime-env-agent-port={p[5]}",
                "--object-store-memory=200000000",
                "--disable-usage-stats",
            ]
            log = open(self.log_dir / f"ray-{name}.log", "wb")
            self.nodes[name] = subprocess.Popen(
                [*RAY, *args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            log.close()
            if name == "head":
                self._wait_head(gcs)
            else:  # one node at a time: nodes started together pick the same socket names (see below)
                self._wait_nodes(i + 1)
        return self.address

    def _wait_head(self, port: int) -> None:
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
            if self.nodes["head"].poll() is not None:
                raise RuntimeError(f"ray head exited with {self.nodes['head'].returncode} (log {self.log_dir})")
            time.sleep(0.5)
        raise RuntimeError(f"ray head did not listen on {port} within {START_S:.0f} s")

    def _wait_nodes(self, n: int) -> None:
        code = (
            "import ray, sys\nray.init(address=sys.argv[1], log_to_driver=False)\n"
            "print(sum(1 for x in ray.nodes() if x['Alive']))\n"
        )
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline:
            r = subprocess.run(
                [sys.executable, "-c", code, self.address], env=self.env, capture_output=True, text=True, timeout=120
            )
            if r.returncode == 0 and r.stdout.strip().splitlines()[-1:] == [str(n)]:
                return
            time.sleep(2)
        raise RuntimeError(f"the Ray cluster did not reach {n} nodes within {START_S:.0f} s (logs {self.log_dir})")

    def node_of(self, pid: int) -> str | None:
        """The node (head, a, b) whose `ray start` has `pid` among its descendants."""
        roots = {p.pid: name for name, p in self.nodes.items()}
        seen = 0
        while pid and pid > 1 and seen < 64:
            if pid in roots:
                return roots[pid]
            pid = parent_of(pid) or 0
            seen += 1
        return None

    def stop_node(self, name: str, timeout: float = 60.0) -> int | None:
        """Stop one node as an operator would (SIGTERM to its `ray start`: it drains, then ends its processes)."""
        p = self.nodes[name]
        os.killpg(p.pid, signal.SIGTERM)
        try:
            return p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            return p.wait()

    def stop(self) -> None:
        for p in self.nodes.values():
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        for p in self.nodes.values():
            try:
                p.wait(timeout=40)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()

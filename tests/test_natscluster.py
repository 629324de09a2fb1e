"""The test cluster itself: a port taken between picking and binding, and a start that fails for good."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from faceonly_backend.natscluster import ClusterError, NatsCluster, find_nats_server
from tests.conftest import missing_data


@pytest.fixture
def nats_binary() -> None:
    try:
        find_nats_server()
    except ClusterError as exc:
        missing_data(str(exc))


@pytest.fixture
def taken() -> Iterator[socket.socket]:
    """A listening socket standing in for another process that took a port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        yield s


def _take(s: socket.socket, port: int) -> None:
    s.bind(("127.0.0.1", port))
    s.listen()


def test_a_port_taken_before_the_node_binds_it_gives_fresh_ports(
    nats_binary: None, taken: socket.socket, tmp_path: Path
) -> None:
    cluster = NatsCluster(tmp_path, 2)
    port = cluster.node("n2").client_port
    _take(taken, port)
    with cluster:
        assert all(node.running for node in cluster.nodes)
        assert port not in {p for n in cluster.nodes for p in (n.client_port, n.cluster_port, n.mqtt_port)}
        assert cluster.node("n1").monitor("healthz")["status"] == "ok"
        assert cluster.node("n2").monitor("healthz")["status"] == "ok"
    assert not any(node.running for node in cluster.nodes)


def test_a_start_that_fails_for_good_leaves_no_node_running(
    nats_binary: None, taken: socket.socket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = NatsCluster(tmp_path, 2)
    _take(taken, cluster.node("n2").client_port)
    monkeypatch.setattr(cluster, "_pick_new_ports", lambda: None)  # the port stays taken on every attempt
    with pytest.raises(ClusterError, match="address already in use"), cluster:
        pytest.fail("the cluster started on a taken port")
    assert [node.proc is not None for node in cluster.nodes] == [True, True]
    assert not any(node.running for node in cluster.nodes)

"""The command server's budget is the cost of the work, not a count of requests: cheap requests are
answered many per call, an expensive one alone, and at least one whenever any is waiting.

A real Link (never connected: paho keeps the replies) carries the requests; the clock is the one the
handlers advance, so each request costs exactly what the test says."""

from __future__ import annotations

import queue

import pytest

from device.config.mqtt import MqttConfig
from device.runtime.command_server import CommandServer
from device.transport.commands import CommandPlane
from device.transport.link import Inbound, Link
from device.transport.topics import Topics

TOPICS = Topics("faceonly", "t1")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def rig():
    clock = Clock()
    plane = CommandPlane(TOPICS.cmd_res, 65536)
    served: list[str] = []

    def costing(ms: float):
        def handler(args: dict) -> dict:
            clock.now += ms / 1000
            served.append(f"{ms:g}")
            return {}

        return handler

    plane.register("cheap", costing(0.5), read_only=True)
    plane.register("dear", costing(30), read_only=True)
    link = Link(MqttConfig(), "t1", TOPICS, queue.Queue(), command_capacity=200)
    server = CommandServer(plane, link, "t1", reply_queue=1000, clock=clock)
    yield server, link, served
    link.client.loop_stop()


def _request(link: Link, name: str, n: int) -> None:
    for _ in range(n):
        link._put_command(Inbound(TOPICS.cmd_req(name), b"{}", None, None, False))


def test_cheap_requests_fill_the_budget_and_the_rest_wait(rig) -> None:
    server, link, served = rig
    _request(link, "cheap", 100)
    server.serve(budget_s=0.004)
    assert len(served) == 8  # 8 x 0.5 ms = the 4 ms budget
    assert link.commands.qsize() == 92 and server.ready
    assert server.counts["budget_spent"] == 1


def test_an_expensive_request_is_served_alone_but_served(rig) -> None:
    server, link, served = rig
    _request(link, "dear", 3)
    for calls in (1, 2, 3):
        server.serve(budget_s=0.004)
        assert len(served) == calls  # one per call: never none, never two
    server.serve(budget_s=0.004)
    assert len(served) == 3 and not server.ready


def test_mixed_costs_are_counted_by_cost(rig) -> None:
    server, link, served = rig
    _request(link, "cheap", 2)
    _request(link, "dear", 1)
    _request(link, "cheap", 20)
    server.serve(budget_s=0.004)
    assert served == ["0.5", "0.5", "30"]
    server.serve(budget_s=0.004)
    assert served[3:] == ["0.5"] * 8

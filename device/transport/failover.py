"""Which broker of a cluster to try next, and when: the terminal's and the simulated fleet's one policy.

A cluster is a list of equivalent broker URLs (every node of it serves every terminal). A terminal starts
on the node its id hashes to, so a fleet spreads evenly over the nodes without any coordination, and moves
to the next node on every failed or lost connection: the terminals of a node that died spread over the
others. The delay before each attempt grows from `min_s` to `max_s` (doubling) and is drawn between half
and all of that ("equal jitter"), so the thousands of terminals that lose one node at the same moment come
back spread over time instead of all at once, and no terminal retries faster than half the minimum.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt

from device.transport.client import BrokerUrl


@dataclass
class Backoff:
    min_s: float
    max_s: float
    rng: random.Random = field(default_factory=random.Random)
    attempts: int = 0  # failed attempts since the last good connection

    def next_delay(self) -> float:
        """The wait before the next attempt (and count it)."""
        ceiling = min(self.max_s, self.min_s * 2 ** min(self.attempts, 30))
        self.attempts += 1
        return self.rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempts = 0


class BrokerRing:
    """The cluster's URLs in a fixed order, with the one to use now."""

    def __init__(self, urls: Sequence[BrokerUrl], client_id: str) -> None:
        if not urls:
            raise ValueError("no broker URL")
        self.urls = list(urls)
        digest = hashlib.sha256(client_id.encode("utf-8")).digest()
        self.index = int.from_bytes(digest[:4], "big") % len(self.urls)

    @property
    def current(self) -> BrokerUrl:
        return self.urls[self.index]

    def advance(self) -> BrokerUrl:
        """The next node (after a failed or lost connection)."""
        self.index = (self.index + 1) % len(self.urls)
        return self.current

    def __str__(self) -> str:
        return str(self.current) if len(self.urls) == 1 else f"{self.current} (1 of {len(self.urls)})"


def aim(client: mqtt.Client, url: BrokerUrl) -> None:
    """Point `client`'s next connection attempt at `url`. paho's host and port setters refuse while an attempt
    is under way (which is when a failover chooses the node), so this sets the fields they guard; a paho that
    renamed them fails tests/test_fleet_failover.py."""
    client._host, client._port = url.host, url.port

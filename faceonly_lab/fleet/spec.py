"""What a simulated fleet is (picklable: every worker process gets one) and what it reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class SimSpec:
    brokers: list[
        str
    ]  # the cluster's MQTT nodes (every terminal spreads over them, device.transport.failover)
    ids: list[str]  # this worker's terminals
    seed: bytes  # the fleet seed (faceonly_lab.fleet.identities)
    events: list[dict[str, Any]]  # recorded protected bodies (faceonly_lab.fleet.recording)
    rate: float = 0.0  # face events per second, this worker's share
    start_at: float = 0.0  # wall-clock time publishing starts (every worker); 0: when Fleet.begin_events says
    duration_s: float = 0.0  # how long events are published
    protocol: Literal["5", "3.1.1"] = "3.1.1"
    subscription_qos: int = 0
    prefix: str = "faceonly"
    keepalive_s: int = 30
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    session_expiry_s: int = 7 * 24 * 3600
    will_delay_s: int = 5
    event_ttl_s: float = 7 * 24 * 3600
    inflight_window: int = 50
    connect_rate: float = 500.0  # first connections per second (this worker)
    health_interval_s: float = 60.0  # 0: no health
    command_public_key: bytes | None = None
    gallery_public_key: str | None = (
        None  # a path: terminals take gallery commands (the first `gallery_count`)
    )
    gallery_count: int = 0
    state_root: str | None = None  # per-terminal nonce files and galleries; None: nonces in memory
    report_every_s: float = 1.0


@dataclass
class WorkerReport:
    """A worker's running totals (sent every report_every_s, and a last time when it ends)."""

    worker: int
    terminals: int
    connected: int = 0
    ever_connected: int = 0
    created: int = 0
    acked: int = 0
    outbox: int = 0
    reconnects: list[tuple[float, float, int]] = field(
        default_factory=list
    )  # (lost, back, attempts), wall-clock
    ready_at: float | None = None  # when its first connection attempt went out (its terminals built)
    connect_failures: int = 0
    refused_subscriptions: int = 0
    commands: int = 0
    replies: int = 0
    health: int = 0
    lag_ms: list[float] = field(default_factory=list)  # publish-to-PUBACK of the acks since the last report
    loop_lag_ms: float = 0.0  # how late the worker's event loop ran its timers (its own overload)
    done: bool = False
    error: str | None = None

"""The fleet on a real cluster, short (CI): 500 simulated terminals with persistent sessions and the terminal's
subscriptions on 3 NATS nodes, 2 backends on PostgreSQL, events for 30 s with the `$MQTT_msgs` stream leader
SIGKILLed at 10 s and restarted at 20 s. Nothing a terminal saw acknowledged is missing from PostgreSQL or
there twice; every terminal came back; a signed command to all of them is answered by each; a gallery rolled
out to 100 of them in batches is held by each. The full size is scripts/benchmark_fleet.py."""

from __future__ import annotations

import json
from pathlib import Path

from faceonly_backend.natscluster import ClusterError, find_nats_server
from tests.conftest import missing_data
from tests.fleet_scenario import Scenario, run

SHORT = Scenario(
    terminals=500,
    processes=2,
    rate=20.0,
    duration_s=30.0,
    kill_at_s=10.0,
    restart_at_s=20.0,
    gallery_terminals=100,
    gallery_batch=25,
)


def test_500_terminals_a_node_killed_nothing_lost(tmp_path: Path) -> None:
    try:
        find_nats_server()
    except ClusterError as exc:
        missing_data(str(exc))
    figures = run(SHORT, tmp_path)
    report = json.dumps(figures.as_json(), indent=1)
    assert figures.connect_s is not None and figures.connect_s <= 60, report
    assert figures.killed is not None, report
    assert figures.created > 0.9 * SHORT.rate * SHORT.duration_s, report
    assert figures.unacked == 0 and figures.acked == figures.created, report  # every event acknowledged
    assert figures.acked_missing == 0, report  # every acknowledged event is a row
    assert figures.rows == figures.acked and figures.rows_duplicated == 0, report  # and only once
    assert figures.all_back_s is not None and figures.all_back_s <= 30, report
    assert figures.command_ok == SHORT.terminals, report
    assert figures.rollout_ok == SHORT.gallery_terminals, report

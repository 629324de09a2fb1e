"""The simulated fleet as a whole: its worker processes, their running totals, and the figures of a run.

    fleet = Fleet(base_spec, ids, processes=4, out_dir=Path("var/fleet-run"))
    fleet.start()
    fleet.wait_until(lambda t: t["connected"] == len(ids), timeout=60)
    ...
    totals = fleet.stop()          # the last totals; acked-N.csv / unacked-N.csv are in out_dir

Each worker (faceonly_lab.fleet.swarm) takes a contiguous share of the ids and of the event rate. The parent only
reads their reports (a multiprocessing queue), so it can run a benchmark's clock, kill a broker node and
send commands while the terminals run.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing as mp
import queue
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from faceonly_lab.fleet.spec import SimSpec, WorkerReport
from faceonly_lab.fleet.swarm import run_worker


class FleetError(RuntimeError):
    """A worker process failed (its error is in the message)."""


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


class Fleet:
    def __init__(self, base: SimSpec, ids: list[str], processes: int, out_dir: Path) -> None:
        if processes < 1:
            raise ValueError("at least one process")
        self.base, self.ids, self.out_dir = base, ids, Path(out_dir)
        self.processes = max(1, min(processes, len(ids)))
        self._ctx = mp.get_context("spawn")
        self._reports: Any = self._ctx.Queue()
        self._stop = self._ctx.Event()
        self._window = self._ctx.Array("d", [base.start_at, base.duration_s])
        self._procs: list[Any] = []
        self.latest: dict[int, WorkerReport] = {}
        self.lag_ms: list[float] = []
        self.started_at: float | None = None

    def start(self) -> None:
        share = math.ceil(len(self.ids) / self.processes)
        for i in range(self.processes):
            ids = self.ids[i * share : (i + 1) * share]
            gallery = max(0, min(len(ids), self.base.gallery_count - i * share))
            spec = dataclasses.replace(
                self.base, ids=ids, rate=self.base.rate * len(ids) / len(self.ids), gallery_count=gallery
            )
            proc = self._ctx.Process(
                target=run_worker,
                args=(i, spec, self._reports, self._stop, self._window, str(self.out_dir)),
                daemon=True,
            )
            proc.start()
            self._procs.append(proc)
        self.started_at = time.monotonic()

    def begin_events(self, start_at: float, duration_s: float) -> None:
        """Start the events at wall-clock `start_at`, for `duration_s` (when the spec did not say when)."""
        self._window[1] = duration_s
        self._window[0] = start_at

    def poll(self, timeout: float = 0.0) -> dict[str, Any]:
        """Take the reports that arrived (waiting up to `timeout` for the first); the fleet's totals."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                report: WorkerReport = self._reports.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if report.error:
                raise FleetError(f"fleet-sim worker {report.worker} failed: {report.error}")
            self.latest[report.worker] = report
            self.lag_ms += report.lag_ms
            deadline = time.monotonic()  # then only what is already there
        for proc in self._procs:
            if proc.exitcode not in (None, 0) and not self._stop.is_set():
                raise FleetError(f"fleet-sim worker pid {proc.pid} exited with status {proc.exitcode}")
        return self.totals()

    def totals(self) -> dict[str, Any]:
        reports = list(self.latest.values())

        def total(name: str) -> int:
            return sum(getattr(r, name) for r in reports)

        reconnects = [back - lost for lost, back, _ in self.reconnects()]
        ready = [r.ready_at for r in reports if r.ready_at is not None]
        return {
            "terminals": len(self.ids),
            "workers_reporting": len(reports),
            "connected": total("connected"),
            "ever_connected": total("ever_connected"),
            "created": total("created"),
            "acked": total("acked"),
            "outbox": total("outbox"),
            "reconnects": len(reconnects),
            "reconnect_max_s": max(reconnects, default=None),
            "reconnect_p99_s": percentile(reconnects, 99),
            "connect_failures": total("connect_failures"),
            "refused_subscriptions": total("refused_subscriptions"),
            "commands": total("commands"),
            "replies": total("replies"),
            "health": total("health"),
            "ack_p50_ms": percentile(self.lag_ms, 50),
            "ack_p99_ms": percentile(self.lag_ms, 99),
            "worker_loop_lag_ms": max((r.loop_lag_ms for r in reports), default=None),
            "connecting_since": min(ready) if len(ready) == len(self._procs) else None,
        }

    def reconnects(self) -> list[tuple[float, float, int]]:
        """(connection lost, connected again, attempts) of every reconnection so far, wall-clock times."""
        return [pair for r in self.latest.values() for pair in r.reconnects]

    def wait_until(
        self,
        pred: Callable[[dict[str, Any]], bool],
        timeout: float,
        every: Callable[[dict], None] | None = None,
    ) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            totals = self.poll(0.5)
            if every is not None:
                every(totals)
            if pred(totals):
                return True
        return pred(self.poll())

    def stop(self, timeout: float = 60.0) -> dict[str, Any]:
        """Tell the workers to stop; wait for their last reports (results written); the last totals."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not all(r.done for r in self.latest.values()):
            self.poll(0.5)
            if len(self.latest) < len(self._procs) and all(p.exitcode is not None for p in self._procs):
                break
        for proc in self._procs:
            proc.join(max(0.1, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        return self.totals()

    def acked(self) -> list[tuple[str, str, float, float]]:
        """(event id, terminal, created_at, acked_at) of every acknowledged event (after stop)."""
        import csv

        out = []
        for path in sorted(self.out_dir.glob("acked-*.csv")):
            with open(path, newline="", encoding="utf-8") as fh:
                for row in csv.DictReader(fh):
                    out.append(
                        (row["event_id"], row["terminal"], float(row["created_at"]), float(row["acked_at"]))
                    )
        return out

    def unacked(self) -> list[str]:
        import csv

        out = []
        for path in sorted(self.out_dir.glob("unacked-*.csv")):
            with open(path, newline="", encoding="utf-8") as fh:
                out += [row["event_id"] for row in csv.DictReader(fh)]
        return out

"""One worker process of the simulated fleet: thousands of terminals on one asyncio loop.

Each simulated terminal is a real paho client; none has a thread. paho's external-loop interface hands the
sockets to asyncio (read when readable, write when paho has bytes queued), and one ticker runs every
client's `loop_misc` (keepalive, a dead connection noticed). Reconnection is the terminal's own policy, run
as timers on this loop. The worker publishes the fleet's recorded events at its share of the rate, sends
health, answers commands, reports its running totals to the parent every second and, when told to stop,
writes what was acknowledged (acked-N.csv) and what was not (unacked-N.csv) into the output folder.
"""

from __future__ import annotations

import asyncio
import csv
import logging
import os
import random
import signal
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from faceonly_lab.fleet.identities import signer_for
from faceonly_lab.fleet.simterminal import Results, SimTerminal
from faceonly_lab.fleet.spec import SimSpec, WorkerReport

log = logging.getLogger(__name__)
TICK_S = 0.05


def run_worker(index: int, spec: SimSpec, reports: Any, stop: Any, window: Any, out_dir: str) -> None:
    """A worker process's main: `reports` a multiprocessing queue, `stop` a multiprocessing event, `window` a
    shared [start_at, duration_s] of the events (start_at 0: not yet; the parent sets it)."""
    # Ctrl-C reaches the whole process group: the parent alone decides when the workers stop (and they
    # then write their results); a worker whose parent died stops by itself (its parent id changes).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.WARNING, format=f"fleet-sim[{index}] %(levelname)s %(name)s: %(message)s"
    )
    swarm = Swarm(index, spec, Path(out_dir))
    try:
        asyncio.run(swarm.run(reports, stop, window))
    except Exception as exc:  # noqa: BLE001 - the parent must hear why a worker ended, whatever it was
        report = swarm.report()
        report.done, report.error = True, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()[-2000:]}"
        reports.put(report)


class Swarm:
    def __init__(self, index: int, spec: SimSpec, out_dir: Path) -> None:
        self.index, self.spec, self.out_dir = index, spec, out_dir
        self.results = Results()
        self.terminals: list[SimTerminal] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.rng = random.Random(index)
        self.loop_lag_s = 0.0
        self.ready_at: float | None = None
        self._reported_acks = 0

    def schedule(self, delay: float, fn: Callable[[], None]) -> None:
        assert self.loop is not None
        self.loop.call_later(delay, fn)

    def _attach(self, client: mqtt.Client) -> None:
        loop = self.loop
        assert loop is not None

        def opened(c: mqtt.Client, userdata: Any, sock: Any) -> None:
            loop.add_reader(sock, c.loop_read)

        def closed(c: mqtt.Client, userdata: Any, sock: Any) -> None:
            loop.remove_reader(sock)
            loop.remove_writer(sock)

        def want_write(c: mqtt.Client, userdata: Any, sock: Any) -> None:
            loop.add_writer(sock, c.loop_write)

        def written(c: mqtt.Client, userdata: Any, sock: Any) -> None:
            loop.remove_writer(sock)

        client.on_socket_open = opened
        client.on_socket_close = closed
        client.on_socket_register_write = want_write
        client.on_socket_unregister_write = written

    def _build(self) -> None:
        spec = self.spec
        for n, tid in enumerate(spec.ids):
            gallery = (
                Path(spec.gallery_public_key) if spec.gallery_public_key and n < spec.gallery_count else None
            )
            terminal = SimTerminal(
                tid,
                signer_for(spec.seed, tid),
                spec,
                self.results,
                self.schedule,
                spec.command_public_key,
                gallery,
            )
            self._attach(terminal.client)
            self.terminals.append(terminal)

    async def run(self, reports: Any, stop: Any, window: Any) -> None:
        self.loop = asyncio.get_running_loop()
        self._build()
        tasks = [
            asyncio.ensure_future(self._connect_all()),
            asyncio.ensure_future(self._misc()),
            asyncio.ensure_future(self._publish(window)),
            asyncio.ensure_future(self._health()),
            asyncio.ensure_future(self._ticks()),
        ]
        parent = os.getppid()
        while not stop.is_set() and os.getppid() == parent:
            await asyncio.sleep(self.spec.report_every_s)
            reports.put(self.report())
        for task in tasks:
            task.cancel()
        for terminal in self.terminals:
            terminal.stop()
        await asyncio.sleep(1.0)  # the offline statuses and DISCONNECTs leave
        self._write_results()
        final = self.report()
        final.done = True
        reports.put(final)

    async def _connect_all(self) -> None:
        """First connections at `connect_rate` per second, in a shuffled order (spread over the nodes)."""
        order = list(self.terminals)
        self.rng.shuffle(order)
        interval = 1.0 / self.spec.connect_rate if self.spec.connect_rate > 0 else 0.0
        start = time.monotonic()
        self.ready_at = time.time()
        for n, terminal in enumerate(order):
            terminal.connect()
            due = start + (n + 1) * interval
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif n % 50 == 49:
                await asyncio.sleep(0)  # let the replies in

    async def _misc(self) -> None:
        while True:
            expected = time.monotonic() + 1.0
            await asyncio.sleep(1.0)
            self.loop_lag_s = max(0.0, time.monotonic() - expected)
            for terminal in self.terminals:
                terminal.client.loop_misc()

    async def _publish(self, window: Any) -> None:
        """The worker's share of the fleet's event rate, each event from a terminal chosen at random, from the
        window's start for its duration (both set by the parent, possibly after the terminals connected)."""
        spec = self.spec
        if spec.rate <= 0 or not spec.events:
            return
        while window[0] <= 0:
            await asyncio.sleep(0.1)
        start_at, duration = window[0], window[1]
        await asyncio.sleep(max(0.0, start_at - time.time()))
        emitted, total = 0, round(duration * spec.rate)
        begin = time.time()
        while emitted < total:  # a loop that fell behind catches up: the count is the rate times the duration
            due = min(total, int((time.time() - begin) * spec.rate))
            now = time.time()
            for _ in range(due - emitted):
                terminal = self.terminals[self.rng.randrange(len(self.terminals))]
                terminal.emit(spec.events[emitted % len(spec.events)], now)
                emitted += 1
            await asyncio.sleep(TICK_S)

    async def _ticks(self) -> None:
        """Gallery updates applying on their worker threads: their replies when they are done."""
        with_gallery = [t for t in self.terminals if t.identity is not None]
        while with_gallery:
            await asyncio.sleep(0.1)
            for terminal in with_gallery:
                terminal.tick()

    async def _health(self) -> None:
        if self.spec.health_interval_s <= 0:
            return
        due = {id(t): time.monotonic() + self.rng.uniform(0, t.health_interval_s) for t in self.terminals}
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for terminal in self.terminals:
                if due[id(terminal)] <= now:
                    terminal.send_health()
                    due[id(terminal)] = now + terminal.health_interval_s

    def report(self) -> WorkerReport:
        r = self.results
        fresh = r.acked[self._reported_acks :]
        self._reported_acks = len(r.acked)
        return WorkerReport(
            worker=self.index,
            terminals=len(self.spec.ids),
            connected=sum(t.connected for t in self.terminals),
            ever_connected=sum(t.ever_connected for t in self.terminals),
            created=r.created,
            acked=len(r.acked),
            outbox=sum(len(t.outbox) for t in self.terminals),
            reconnects=list(r.reconnects),
            connect_failures=r.connect_failures,
            refused_subscriptions=r.refused_subscriptions,
            commands=r.commands,
            replies=r.replies,
            health=r.health,
            lag_ms=[round((acked - created) * 1000, 2) for _, _, created, acked in fresh],
            loop_lag_ms=round(self.loop_lag_s * 1000, 1),
            ready_at=self.ready_at,
        )

    def _write_results(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.out_dir / f"acked-{self.index}.csv", "w", newline="", encoding="utf-8") as fh:
            out = csv.writer(fh)
            out.writerow(["event_id", "terminal", "created_at", "acked_at"])
            out.writerows((e, t, f"{c:.6f}", f"{a:.6f}") for e, t, c, a in self.results.acked)
        with open(self.out_dir / f"reconnects-{self.index}.csv", "w", newline="", encoding="utf-8") as fh:
            out = csv.writer(fh)
            out.writerow(["lost_at", "back_at", "attempts"])
            out.writerows((f"{lost:.3f}", f"{back:.3f}", n) for lost, back, n in self.results.reconnects)
        with open(self.out_dir / f"unacked-{self.index}.csv", "w", newline="", encoding="utf-8") as fh:
            out = csv.writer(fh)
            out.writerow(["event_id", "terminal", "created_at"])
            for terminal in self.terminals:
                out.writerows((e, terminal.tid, f"{c:.6f}") for e, (_, c) in terminal.outbox.items())

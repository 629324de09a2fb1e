"""The broker connection as the operator sees it: one log line per state change (connected, lost,
refused, taken over), naming the broker, with journal fields; and the alarms it feeds (auth failure,
duplicate id). A reconnect loop that fails the same way again logs nothing new."""

from __future__ import annotations

import logging
from collections.abc import Callable

from device.runtime.alarms import Alarms
from device.transport.link import NOT_AUTHORIZED, Acked, Connected, ConnectFailed, Disconnected, LinkEvent

log = logging.getLogger("device.runtime.service")  # the service's voice: these lines are about its connection


class LinkWatch:
    def __init__(self, alarms: Alarms, broker: Callable[[], str], client_id: str) -> None:
        self.alarms = alarms
        self.broker = broker  # read at each event: a SIGHUP may have changed it (applied after a restart)
        self.client_id = client_id
        self.last_connect_error: str | None = None
        self.taken_over = 0  # times another client was seen using our terminal id

    def handle(self, event: LinkEvent) -> None:
        broker = self.broker()
        fields = {"FACEONLY_BROKER": broker}
        if isinstance(event, Acked):
            if not event.ok and event.reason == NOT_AUTHORIZED:
                self.alarms.auth_refused(f"broker {broker} refused a publish: {event.reason} (ACL)")
        elif isinstance(event, Connected):
            self.last_connect_error = None
            self.alarms.connected()
            log.info(
                "connected to %s (session present: %s)",
                broker,
                event.session_present,
                extra={**fields, "FACEONLY_LINK": "connected"},
            )
        elif isinstance(event, ConnectFailed):
            if event.auth:
                self.alarms.auth_refused(f"broker {broker} refused the connection: {event.reason}")
            if event.reason != self.last_connect_error:  # one line per cause, not one per retry
                log.log(
                    logging.ERROR if event.auth else logging.WARNING,
                    "cannot connect to %s: %s (retrying)",
                    broker,
                    event.reason,
                    extra={**fields, "FACEONLY_LINK": "refused" if event.auth else "unreachable"},
                )
            self.last_connect_error = event.reason
        elif isinstance(event, Disconnected) and event.taken_over:
            self.taken_over_by("the broker disconnected us with reason 'Session taken over'")
        elif isinstance(event, Disconnected):
            log.warning(
                "connection to %s lost: %s (reconnecting)",
                broker,
                event.reason,
                extra={**fields, "FACEONLY_LINK": "lost"},
            )

    def taken_over_by(self, evidence: str) -> None:
        self.taken_over += 1
        self.alarms.taken_over(evidence)
        log.error(
            "session taken over: another client is connected as %r (a duplicate terminal id?): %s",
            self.client_id,
            evidence,
            extra={"FACEONLY_LINK": "taken_over"},
        )

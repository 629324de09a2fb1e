"""The prompt channel: where the liveness challenge's prompts go, local first.

The person at the gate must be told what to do even while the broker is away, or everyone is rejected: the
terminal's own screen or speaker listens on a local datagram socket (`service.prompt_socket`), and the MQTT
prompt topic is one more listener. Each sink says whether anyone is listening; health and status report it.
"""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path
from typing import Any

from device.config import Config
from device.contracts import FaceGuide, GuideSink, Prompt, PromptSink
from device.screen.door import ScreenSink
from device.transport.envelope import Meta, encode, envelope
from device.transport.link import Link
from device.transport.topics import Topics

log = logging.getLogger(__name__)

PROMPT_TTL_S = 30


# What a prompt may say on the broker: codes and numbers. The subject id only where privacy.prompt_subject
# allows it; a display name never (a Prompt has none, and this list is what leaves).
MQTT_FIELDS = ("track_id", "state", "code", "step", "step_index", "steps", "deadline_s", "t")
MQTT_PARAMS = ("reason", "try")


def mqtt_prompt_body(prompt: Prompt, with_subject: bool) -> dict[str, Any]:
    body: dict[str, Any] = {k: getattr(prompt, k) for k in MQTT_FIELDS}
    allowed = (*MQTT_PARAMS, "subject") if with_subject else MQTT_PARAMS
    body["params"] = {k: v for k, v in prompt.params.items() if k in allowed}
    return body


class MqttPromptSink:
    """Prompts on the terminal's prompt topic (QoS 0, short expiry); listening while the link is up."""

    def __init__(self, link: Link, topic: str, terminal_id: str, with_subject: bool = False) -> None:
        self.link, self.topic, self.tid, self.with_subject = link, topic, terminal_id, with_subject

    def publish(self, prompt: Prompt) -> None:
        body = mqtt_prompt_body(prompt, self.with_subject)  # the envelope carries the schema
        payload = envelope("prompt", self.tid, body, ttl_s=PROMPT_TTL_S)
        self.link.publish(self.topic, encode(payload), qos=0, meta=Meta.of(payload))

    def listening(self) -> bool:
        return self.link.connected


class LocalPromptSink:
    """Prompts as JSON datagrams to a local AF_UNIX socket (the screen or speaker process binds it).

    Never blocks the pipeline: a missing, refusing or full listener drops the prompt and counts it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sent = 0
        self.undelivered = 0
        self._listening = False
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)

    def publish(self, prompt: Prompt) -> None:
        data = json.dumps({"prompt": prompt.to_dict()}, separators=(",", ":")).encode("utf-8")
        try:
            self._sock.sendto(data, str(self.path))
        except OSError as exc:  # no listener (ENOENT, ECONNREFUSED) or a full one (EAGAIN)
            if self._listening or self.undelivered == 0:
                log.warning("prompt socket %s: nobody listening (%s)", self.path, exc.strerror or exc)
            self._listening = False
            self.undelivered += 1
            return
        if not self._listening:
            log.info("prompt socket %s: listener there", self.path)
        self._listening = True
        self.sent += 1

    def listening(self) -> bool:
        return self._listening

    def close(self) -> None:
        self._sock.close()


class PromptChannel:
    """Every prompt to every sink, every face guide to the guide sinks (the door screen only: landmarks
    never go to the broker); listening when any sink is."""

    def __init__(self, sinks: dict[str, PromptSink], guides: tuple[GuideSink, ...] = ()) -> None:
        self.sinks = sinks
        self.guides = guides

    def publish(self, prompt: Prompt) -> None:
        for sink in self.sinks.values():
            sink.publish(prompt)

    def guide(self, guide: FaceGuide) -> None:
        for sink in self.guides:
            sink.guide(guide)

    def listening(self) -> bool:
        return any(sink.listening() for sink in self.sinks.values())

    def describe(self) -> dict[str, Any]:
        return {"listening": self.listening(), "sinks": {n: s.listening() for n, s in self.sinks.items()}}

    def close(self) -> None:
        for sink in self.sinks.values():
            if isinstance(sink, LocalPromptSink):
                sink.close()


def build_prompt_channel(
    cfg: Config, link: Link, topics: Topics, screen: ScreenSink | None = None
) -> PromptChannel:
    sinks: dict[str, PromptSink] = {}
    if screen is not None:
        sinks["screen"] = screen
    if cfg.service.prompt_socket is not None:
        sinks["local"] = LocalPromptSink(cfg.service.prompt_socket)
    sinks["mqtt"] = MqttPromptSink(link, topics.prompt, cfg.terminal_id, cfg.privacy.prompt_subject)
    return PromptChannel(sinks, (screen,) if screen is not None else ())

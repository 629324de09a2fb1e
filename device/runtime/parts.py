"""The edges the service loop drives (broker link, durable outbox and its courier, command plane and server,
capture thread, prompt channel with the door screen), made from the config in one place: by the CLI for a real terminal, or by a
test that wants the real loop in-process."""

from __future__ import annotations

import queue
from dataclasses import dataclass
from pathlib import Path

from device.config import Config
from device.contracts import FrameSource
from device.runtime.capture import Capture
from device.runtime.command_server import CommandServer, build_plane
from device.runtime.prompts import PromptChannel, build_prompt_channel
from device.screen.door import DoorScreen
from device.transport.commands import CommandPlane
from device.transport.courier import Courier
from device.transport.link import Link, LinkEvent
from device.transport.outbox import Outbox
from device.transport.topics import Topics

INBOX_SIZE = 10_000


@dataclass
class TerminalParts:
    topics: Topics
    inbox: queue.Queue[LinkEvent]
    link: Link
    outbox: Outbox
    courier: Courier
    plane: CommandPlane
    commands: CommandServer
    capture: Capture
    prompts: PromptChannel
    screen: DoorScreen | None = None  # started and stopped by its owner (the CLI): it outlives a service


def build_parts(
    cfg: Config, source: FrameSource, command_key: bytes | None, screen: DoorScreen | None = None
) -> TerminalParts:
    topics = Topics(cfg.mqtt.topic_prefix, cfg.terminal_id)
    inbox: queue.Queue[LinkEvent] = queue.Queue(INBOX_SIZE)
    outbox = Outbox(Path(cfg.service.state_dir) / "outbox", cfg.outbox)
    plane = build_plane(cfg, topics, command_key)
    link = Link(
        cfg.mqtt,
        cfg.terminal_id,
        topics,
        inbox,
        command_capacity=cfg.control.inbox_size,
        command_bytes=cfg.control.inbox_bytes,
    )
    return TerminalParts(
        topics=topics,
        inbox=inbox,
        link=link,
        outbox=outbox,
        courier=Courier(outbox, link, cfg.mqtt.inflight_window, cfg.mqtt.ack_timeout_s),
        plane=plane,
        commands=CommandServer(plane, link, cfg.terminal_id, cfg.control.reply_queue),
        capture=Capture(source),
        prompts=build_prompt_channel(cfg, link, topics, screen.sink if screen is not None else None),
        screen=screen,
    )

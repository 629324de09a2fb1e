"""The topic tree: `<prefix>/v1/dev/<terminal id>/...`, one namespace per terminal."""

from __future__ import annotations

import re
from dataclasses import dataclass

API_VERSION = "v1"
COMMAND_NAME_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$"

# A terminal id is its MQTT client id, one level of its topics and, on a NATS cluster, one token of NATS
# subjects, so it must be all three on every engine. MQTT reserves '/', '+' and '#' in topics; NATS refuses
# whitespace and DEL in subjects and reads '*' and '>' as wildcards (an id "*" would subscribe to every
# terminal's commands there), and refuses a client id with '.', its subject separator, or any of those
# (CONNACK "identifier rejected": checked against nats-server 2.15, tests/test_fleet_ids.py).
TERMINAL_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
_TERMINAL_ID = re.compile(TERMINAL_ID_PATTERN)
TERMINAL_ID_RULE = (
    "1-64 characters: letters, digits, '_' and '-', starting with a letter or digit (no '.', whitespace, "
    "'/', '+', '#', '*' or '>': MQTT and NATS read those as separators or wildcards, and NATS refuses such "
    "client ids)"
)


def check_terminal_id(text: str) -> str:
    """`text` if it can be a terminal id on any broker (MQTT topics and NATS subjects), else ValueError."""
    if not _TERMINAL_ID.fullmatch(text):
        raise ValueError(f"terminal id {text!r} is not usable: {TERMINAL_ID_RULE}")
    return text


@dataclass(frozen=True)
class Topics:
    prefix: str
    terminal_id: str

    @property
    def base(self) -> str:
        return f"{self.prefix}/{API_VERSION}/dev/{self.terminal_id}"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def health(self) -> str:
        return f"{self.base}/health"

    @property
    def event_face(self) -> str:
        return f"{self.base}/event/face"

    @property
    def event_access(self) -> str:
        """Door decisions (device/access): which mode decided, which factors passed; codes and ids only."""
        return f"{self.base}/event/access"

    @property
    def prompt(self) -> str:
        return f"{self.base}/prompt"

    @property
    def gate(self) -> str:
        """Signed gate decisions ([gate] kind = "mqtt") for `faceonly gate listen` (device.gate)."""
        return f"{self.base}/gate"

    @property
    def doctor(self) -> str:
        """`faceonly doctor` publishes a probe here and reads it back (can the terminal use its namespace?)."""
        return f"{self.base}/doctor"

    @property
    def cmd_req_filter(self) -> str:
        return f"{self.base}/cmd/req/+"

    def cmd_req(self, name: str) -> str:
        return f"{self.base}/cmd/req/{name}"

    @property
    def cmd_res(self) -> str:
        return f"{self.base}/cmd/res"

    @property
    def config_desired(self) -> str:
        return f"{self.base}/config/desired"

    @property
    def config_reported(self) -> str:
        return f"{self.base}/config/reported"

    def command_name(self, topic: str) -> str | None:
        """The command a request topic names, or None if `topic` is not a request topic of ours."""
        head = f"{self.base}/cmd/req/"
        return topic[len(head) :] if topic.startswith(head) else None


def valid_publish_topic(topic: object) -> bool:
    """A topic we may publish to: non-empty UTF-8 text without wildcards or NUL, within MQTT's limit."""
    if not isinstance(topic, str) or not topic or "\x00" in topic or "+" in topic or "#" in topic:
        return False
    try:
        return len(topic.encode("utf-8")) <= 65535
    except UnicodeEncodeError:
        return False

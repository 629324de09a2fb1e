"""Where a command reply may go: the terminal's own reply topic, or the configured reply namespace.

A requester names the reply topic (MQTT 5 ResponseTopic or `reply_to`), so without this check it
could make the terminal publish on its own `event/face`, `status` or `config/desired`, on another
terminal's topics, or on `$SYS`/`$share`. Allowed: `<base>/cmd/res` and below, and topics matched by
one of the reply namespace filters (default `<prefix>/v1/backend/#`); never a wildcard, never a `$`
topic, never another topic of the terminal itself, whatever the filters say.
"""

from __future__ import annotations

from paho.mqtt.client import topic_matches_sub

from device.transport.topics import API_VERSION, Topics, valid_publish_topic


def default_namespaces(prefix: str) -> tuple[str, ...]:
    return (f"{prefix}/{API_VERSION}/backend/#",)


class ReplyPolicy:
    def __init__(self, topics: Topics, namespaces: tuple[str, ...]) -> None:
        self.topics = topics
        self.namespaces = namespaces

    def refusal(self, topic: str) -> str | None:
        """Why replies must not go to `topic`, or None when they may."""
        if not valid_publish_topic(topic):
            return "reply topic must be a topic name without wildcards"
        if topic.startswith("$"):
            return "reply topic must not be a $ topic"
        res = self.topics.cmd_res
        if topic == res or topic.startswith(res + "/"):
            return None
        if topic == self.topics.base or topic.startswith(self.topics.base + "/"):
            return "reply topic must not be one of the terminal's own topics"
        if any(topic_matches_sub(ns, topic) for ns in self.namespaces):
            return None
        return f"reply topic is outside the reply namespace {list(self.namespaces)}"

"""How NATS's MQTT layer names what it stores: MQTT topics as NATS subjects, and its JetStream stream.

NATS 2.15 carries an MQTT topic as a subject: '/' becomes '.', a '.' inside a level becomes '//', and the
filter wildcards '+' and '#' become '*' and '>'. QoS 1 and 2 messages are stored in the replicated stream
`$MQTT_msgs` under `$MQTT.msgs.<subject>` before the PUBACK. None of this is a stable NATS interface: the
version is pinned (faceonly_backend.natscluster) and tests/test_fleet_stream_layout.py fails when it changes.
Topics with empty levels (`a//b`, a leading or trailing '/') are not faceonly's and are refused here.
"""

from __future__ import annotations

MQTT_STREAM = "$MQTT_msgs"
MQTT_STREAM_PREFIX = "$MQTT.msgs."


def topic_to_subject(topic: str) -> str:
    """The NATS subject of an MQTT topic or filter without empty levels."""
    levels = topic.split("/")
    if any(level == "" for level in levels):
        raise ValueError(f"topic {topic!r} has an empty level")
    out = []
    for level in levels:
        if level == "+":
            out.append("*")
        elif level == "#":
            out.append(">")
        else:
            out.append(level.replace(".", "//"))
    return ".".join(out)


def subject_to_topic(subject: str) -> str:
    """The MQTT topic of a NATS subject made from one (the inverse of topic_to_subject)."""
    tokens = subject.split(".")
    if any(token == "" for token in tokens):
        raise ValueError(f"subject {subject!r} has an empty token")
    return "/".join(token.replace("//", ".") for token in tokens)


def stored_subject(topic_filter: str) -> str:
    """Where `$MQTT_msgs` keeps the QoS 1 messages on `topic_filter` (a consumer's filter subject)."""
    return MQTT_STREAM_PREFIX + topic_to_subject(topic_filter)


def topic_of_stored(subject: str) -> str | None:
    """The MQTT topic of a message stored in `$MQTT_msgs`, or None if `subject` is not in that stream."""
    if not subject.startswith(MQTT_STREAM_PREFIX):
        return None
    try:
        return subject_to_topic(subject[len(MQTT_STREAM_PREFIX) :])
    except ValueError:
        return None

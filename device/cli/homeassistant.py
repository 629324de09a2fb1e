"""`faceonly homeassistant remove`: decommission a terminal from Home Assistant.

Publishes an empty retained payload on each of its discovery config topics (Home Assistant then
removes the entities and the device) and on its retained HA state. Run it with the terminal's
config (its credentials may write there) after the service has stopped for good; a service still
running with [homeassistant] enabled would publish them again on its next connect.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_FAILED = 1
EXIT_CONFIG = 2
PUBLISH_TIMEOUT_S = 10.0


def register(sub: argparse._SubParsersAction) -> None:
    ha = sub.add_parser("homeassistant", help="Home Assistant discovery: remove a terminal's entities")
    ha_sub = ha.add_subparsers(dest="ha_command", required=True)
    remove = ha_sub.add_parser(
        "remove", help="clear the terminal's retained discovery configs (decommission)"
    )
    remove.add_argument("--config", type=Path, default=None, help="the terminal's TOML config file")
    remove.add_argument("--broker", default=None, help="mqtt://host:port or mqtts://host:port")
    remove.add_argument("--id", dest="terminal_id", default=None, help="terminal id")
    remove.set_defaults(func=_remove, source=None, state_dir=None, models_dir=None)


def _remove(args: argparse.Namespace) -> int:
    from device.cli.run import base_config
    from device.config import ConfigError
    from device.runtime.homeassistant import Discovery
    from device.transport.client import BrokerError, BrokerUrlError, connect_tool
    from device.transport.topics import Topics

    try:
        cfg = base_config(args)
        options = cfg.mqtt.client_options()[0]
    except (ConfigError, BrokerUrlError) as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:
        print(f"cannot read the MQTT password: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    discovery = Discovery(
        cfg.homeassistant, Topics(cfg.mqtt.topic_prefix, cfg.terminal_id), has_temperature=True
    )
    try:
        client = connect_tool(options, f"{cfg.terminal_id}-ha-remove")
    except BrokerError as exc:
        print(exc, file=sys.stderr)
        return EXIT_FAILED
    try:
        pending = [
            (topic, client.publish(topic, b"", qos=1, retain=True)) for topic, _ in discovery.removal()
        ]
        failed = []
        for topic, info in pending:
            info.wait_for_publish(PUBLISH_TIMEOUT_S)
            if not info.is_published():
                failed.append(topic)
    finally:
        client.disconnect()
        client.loop_stop()
    if failed:
        print(f"not acknowledged by {options.broker}: {', '.join(failed)}", file=sys.stderr)
        return EXIT_FAILED
    print(f"removed {cfg.terminal_id} from Home Assistant: {len(pending)} retained topics cleared")
    return 0

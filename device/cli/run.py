"""`faceonly run`: start the terminal service in one line, against any broker (or the embedded demo one).

Config precedence: the TOML file, then these flags, then remote changes accepted earlier
(`config.set` / `config/desired`, stored in the state dir). Exit status: 0 clean stop, 1 fatal
(source cannot open, other start errors worth retrying), 2 invalid config, 3 a permanent fault that
restarting cannot fix (damaged key, state dir that is not a directory, unsafe setting, models failing
verification), 4 another instance runs on the state dir. systemd restarts only on 1 (the unit's
RestartPreventExitStatus lists 2, 3 and 4).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from device.cli import announce
from device.config import Config, ConfigError, load_config, merge, redact
from device.config.files import file_problems
from device.infra.paths import faceonly_command

if TYPE_CHECKING:
    from device.runtime.lifecycle import Lifecycle
    from device.screen import DoorScreen

log = logging.getLogger(__name__)

DEMO_BACKEND = "faceonly_backend.demo"  # the whole system for `faceonly run` (the reference backend)

EXIT_FATAL = 1
EXIT_CONFIG = 2
EXIT_PERMANENT = 3
EXIT_LOCKED = 4
_LONG_TEXT = 200  # longer strings (thumbnail, sealed or encoded embedding) are elided in printed events


def register(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="run the terminal service")
    add_terminal_flags(run)
    run.add_argument("--no-mqtt", action="store_true", help="print one JSON line per event, no broker")
    run.add_argument("--validate-config", action="store_true", help="check the config and exit (0 = valid)")
    run.set_defaults(func=_run)


def add_terminal_flags(parser: argparse.ArgumentParser) -> None:
    """The flags that override the terminal's config file (read back by base_config)."""
    parser.add_argument("--config", type=Path, default=None, help="TOML config file (the terminal's)")
    parser.add_argument(
        "--broker",
        default=None,
        help="mqtt://host:port or mqtts://host:port; a cluster's nodes separated by commas (tried in turn)",
    )
    parser.add_argument(
        "--id", dest="terminal_id", default=None, help="terminal id (MQTT namespace, client id)"
    )
    parser.add_argument("--source", default=None, help="picamera2 | v4l2:N | replay:PATH")
    parser.add_argument("--state-dir", type=Path, default=None, help="outbox, keys and applied config")
    parser.add_argument("--models-dir", type=Path, default=None, help="folder with the models' manifest.json")


def base_config(args: argparse.Namespace) -> Config:
    """File config with the command-line flags applied (raises ConfigError naming the key)."""
    flags: dict[str, Any] = {}
    if args.broker is not None:
        urls = [u.strip() for u in args.broker.split(",")]
        flags["mqtt"] = {"broker": urls if len(urls) > 1 else urls[0]}
    if args.terminal_id is not None:
        flags["terminal_id"] = args.terminal_id
    if args.source is not None:
        flags["vision"] = {"source": args.source}
    service = {"state_dir": args.state_dir, "models_dir": args.models_dir}
    if any(v is not None for v in service.values()):
        flags["service"] = {k: str(v) for k, v in service.items() if v is not None}
    return load_config(args.config, flags)


def _checked_config(args: argparse.Namespace) -> tuple[Config | None, int]:
    """(the config with every file it names checked, 0), or (None, exit status) after printing each problem:
    an invalid config is EXIT_CONFIG; a named file the service cannot use is EXIT_PERMANENT when starting
    (restarting cannot fix it) and EXIT_CONFIG for --validate-config. systemd retries neither."""
    try:
        cfg = base_config(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"config error: {problem}", file=sys.stderr)
        return None, EXIT_CONFIG
    # The files the config names, checked before systemd sees a start fail (and retries it) on a bare errno.
    problems = file_problems(cfg)
    for problem in problems:
        if args.validate_config:
            print(f"config error: {problem}", file=sys.stderr)
        else:
            log.error("cannot start (permanent fault, fix it and start again): %s", problem)
    if problems:
        return None, EXIT_CONFIG if args.validate_config else EXIT_PERMANENT
    return cfg, 0


def _run(args: argparse.Namespace) -> int:
    cfg, code = _checked_config(args)
    if cfg is None:
        return code
    if args.validate_config:
        print(json.dumps(redact(cfg), indent=2))
        print("config OK", file=sys.stderr)
        return 0
    from device.infra.heap import cap_heap_arenas
    from device.privacy.hardening import disable_core_dumps

    disable_core_dumps()
    cap_heap_arenas()  # before any thread starts
    held = _hold_state_dir(cfg)
    if held is not None:
        return held
    try:
        cfg, screen = _door_screen(cfg, demo=cfg.mqtt.broker is None and not args.no_mqtt)
    except OSError as exc:  # the door screen's port is taken
        log.error("cannot start: door screen on %s: %s", cfg.screen.listen, exc.strerror or exc)
        return EXIT_FATAL
    if args.no_mqtt:
        return _run_offline(cfg, screen)
    embedded = None
    if cfg.mqtt.broker is None:
        from device.runtime.demo_broker import EmbeddedBroker

        embedded = EmbeddedBroker(cfg.mqtt.topic_prefix)
        url = embedded.start()
        cfg = merge(cfg, {"mqtt": {"broker": url, "protocol": embedded.protocol}})
        tool = f"{faceonly_command()} ctl --broker {url}" + (
            " --protocol 3.1.1" if embedded.protocol != "5" else ""
        )
        print(
            f"no broker configured: embedded demo broker at {url} ({embedded.kind}); showing what a "
            f"backend receives. Try: {tool} --id {cfg.terminal_id} cmd status",
            file=sys.stderr,
        )
    demo = _demo_backend(cfg, embedded) if embedded is not None else None
    try:
        if demo is not None:
            cfg = demo.terminal_config(cfg)
            _start_pages(demo, screen)
            status = demo.run_passes(cfg, lambda c, lifecycle: _run_service(c, lambda: c, lifecycle, screen))
        else:
            _start_pages(None, screen)
            status = _run_service(cfg, lambda: base_config(args) if embedded is None else cfg, screen=screen)
    finally:
        for part in (screen, demo, embedded):
            if part is not None:
                part.stop()
    if isinstance(status, str):  # "restart"
        log.warning("restarting: exec %s", " ".join(sys.orig_argv))
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
    return status


def _hold_state_dir(cfg: Config) -> int | None:
    """Prepare and lock the state dir for this process (held until exit, released at exec on restart);
    the exit status when that fails."""
    from device.runtime import statedir

    try:
        statedir.prepare(cfg.service.state_dir)
        statedir.hold(cfg.service.state_dir)
    except statedir.StateDirLocked as exc:
        log.error("cannot start: %s", exc)
        return EXIT_LOCKED
    except statedir.StateDirError as exc:
        log.error("cannot start (permanent fault, fix it and start again): %s", exc)
        return EXIT_PERMANENT
    except OSError as exc:
        log.error("cannot start: state dir %s: %s", cfg.service.state_dir, exc)
        return EXIT_FATAL
    return None


def _door_screen(cfg: Config, demo: bool) -> tuple[Config, DoorScreen | None]:
    """The door screen when [screen] enables it (OSError: its port is taken); the demo always has one, on a
    free loopback port."""
    if demo and not cfg.screen.enabled:
        cfg = merge(cfg, {"screen": {"enabled": True, "listen": "127.0.0.1:0"}})
    if not cfg.screen.enabled:
        return cfg, None
    from device.screen import build_door_screen

    return cfg, build_door_screen(cfg.screen)


def _start_pages(demo: Any, screen: DoorScreen | None) -> None:
    """Start the backend's page and the door screen, and say where they are (the README names both lines)."""
    if demo is not None:
        announce("backend page", demo.start())
    if screen is not None:
        announce("door screen", screen.start())


def _demo_backend(cfg: Config, embedded: Any) -> Any:
    """The reference backend beside the embedded broker (faceonly_backend/demo.py), when it can run here."""
    if embedded.protocol != "5":
        print(
            "no backend page: the backend needs an MQTT 5 broker (apt-get install mosquitto)", file=sys.stderr
        )
        return None
    try:  # by name: the terminal's code never imports the backend (tests/test_import_graph.py)
        demo = importlib.import_module(DEMO_BACKEND)
    except ImportError as exc:  # the `backend` extra is not installed
        print(f"no backend page: {exc} (pip install 'faceonly[backend]')", file=sys.stderr)
        return None
    return demo.DemoBackend(cfg, embedded.url)


def _start_error(exc: Exception) -> int:
    """One log line (no traceback) and the exit status for a start-up failure."""
    from device.infra.modelstore import ModelError

    message = " ".join(str(exc).split())  # one line, whatever the exception put in it
    from device.privacy.keyfile import KeyFileError
    from device.runtime.compose import PermanentFault

    if isinstance(exc, PermanentFault | ModelError | KeyFileError):
        log.error("cannot start (permanent fault, fix it and start again): %s", message)
        return EXIT_PERMANENT
    log.error("cannot start: %s", message)
    return EXIT_FATAL


def _run_service(
    cfg: Config,
    reload_base: Callable[[], Config],
    lifecycle: Lifecycle | None = None,
    screen: DoorScreen | None = None,
) -> int | str:
    from device.contracts import SourceError
    from device.infra.modelstore import ModelError
    from device.runtime import compose
    from device.runtime.compose import PermanentFault
    from device.runtime.lifecycle import Lifecycle
    from device.runtime.runtime_config import RuntimeConfig
    from device.runtime.service import Service

    lifecycle = lifecycle or Lifecycle()
    lifecycle.install_signal_handlers()
    runtime = RuntimeConfig(cfg)
    from device.privacy.keyfile import KeyFileError

    errors = (PermanentFault, ModelError, SourceError, OSError, ValueError, KeyFileError)
    try:
        stages = runtime.start(compose.vision, errors)
        service = Service(runtime, compose.build(runtime.current, screen, stages), lifecycle, reload_base)
    except errors as exc:
        return _start_error(exc)
    status = service.run()
    return "restart" if service.restart_requested else status


def _run_offline(cfg: Config, screen: DoorScreen | None) -> int:
    """Events as JSON lines on stdout (long strings elided): for trying a camera or a replay."""
    try:
        return _offline(cfg, screen)
    finally:
        if screen is not None:
            screen.stop()


def _offline(cfg: Config, screen: DoorScreen | None) -> int:
    from device.contracts import PromptSink, SourceError
    from device.identity.feedback import outcome_prompt
    from device.infra.modelstore import ModelError
    from device.runtime import compose
    from device.runtime.capture import Capture
    from device.runtime.compose import PermanentFault
    from device.runtime.lifecycle import Lifecycle
    from device.runtime.prompts import PromptChannel
    from device.transport.envelope import envelope
    from device.vision.liveness.prompts import ConsolePromptSink

    lifecycle = Lifecycle()
    lifecycle.install_signal_handlers()
    try:
        _, source, pipeline, protector = compose.vision(cfg)
    except (PermanentFault, ModelError, SourceError, OSError, ValueError) as exc:
        return _start_error(exc)

    def emit(observations: list) -> None:
        for obs in observations:
            payload = protector.sign(
                envelope("event.face", cfg.terminal_id, protector.protect(obs), ttl_s=cfg.mqtt.event_expiry_s)
            )
            print(json.dumps(_elide(payload)), flush=True)
            prompts.publish(outcome_prompt(obs, None, identifies=False))

    # stderr is a prompt channel here, so the challenge really runs (stdout carries only events).
    sinks: dict[str, PromptSink] = {"console": ConsolePromptSink(sys.stderr)}
    if screen is not None:
        sinks["screen"] = screen.sink
        announce("door screen", screen.start())
    prompts = PromptChannel(sinks, (screen.sink,) if screen is not None else ())
    pipeline.set_prompt_sink(prompts)
    if screen is not None:
        pipeline.set_guide_sink(prompts)
    capture = Capture(source)
    capture.start()
    ready = False
    try:
        while not (lifecycle.stop_requested or capture.ended):
            frame = capture.get(0.2)
            if frame is None:
                continue
            try:
                observations = pipeline.process(frame)
            finally:
                source.release(frame)
            emit(observations)
            lifecycle.frame_processed()
            if not ready:
                lifecycle.ready()
                ready = True
        emit(pipeline.flush())
    finally:
        lifecycle.stopping()
        capture.stop()
    return EXIT_FATAL if capture.error else 0


def _elide(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _elide(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_elide(v) for v in value]
    if isinstance(value, str) and len(value) > _LONG_TEXT:
        return f"<{len(value)} characters>"
    return value

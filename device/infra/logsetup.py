"""Where log lines go: the systemd journal with structured fields when the service runs under it, else
plain text on stderr.

systemd sets JOURNAL_STREAM to the device:inode of the stream it connected to stderr; only when
stderr still is that stream (not redirected by a wrapper) and `systemd.journal` (Debian:
python3-systemd) is importable do records go to the journal natively. There every upper-case
`extra` of a record becomes a field (FACEONLY_ALARM, FACEONLY_BROKER, ...), so `journalctl
FACEONLY_ALARM=disk` finds the disk alarm's raises and clears. Those fields name states, brokers and
config keys only, never a face, an embedding, a subject or a name.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import TextIO

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
IDENTIFIER = "faceonly"


def stderr_is_journal(environ: Mapping[str, str] | None = None, stream: TextIO | None = None) -> bool:
    env = os.environ if environ is None else environ
    try:
        st = os.fstat((stream or sys.stderr).fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return env.get("JOURNAL_STREAM", "") == f"{st.st_dev}:{st.st_ino}"


def journal_handler() -> logging.Handler | None:
    """The journal's own handler (python-systemd), or None where it is not installed."""
    try:
        from systemd.journal import JournalHandler
    except ImportError:
        return None
    return JournalHandler(SYSLOG_IDENTIFIER=IDENTIFIER)


def configure(level: int, environ: Mapping[str, str] | None = None) -> str:
    """Set up the root logger; returns "journal" or "plain" (what was chosen)."""
    handler = journal_handler() if stderr_is_journal(environ) else None
    if handler is None:
        logging.basicConfig(level=level, format=PLAIN_FORMAT, stream=sys.stderr)
        return "plain"
    logging.basicConfig(level=level, handlers=[handler])
    return "journal"

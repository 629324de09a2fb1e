"""Long-running commands stop on SIGINT and SIGTERM, whoever started them.

A non-interactive shell starts a background job (`cmd &`) with SIGINT ignored, and Python leaves an inherited
ignored SIGINT ignored: such a `faceonly ctl watch` could then only be killed. Commands that run until told to
stop install both handlers explicitly.
"""

from __future__ import annotations

import signal


def interrupt_on_stop_signals() -> None:
    """SIGINT and SIGTERM raise KeyboardInterrupt in the main thread (call it from the main thread)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.default_int_handler)

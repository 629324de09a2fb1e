"""device/infra/logsetup.py: the journal only when stderr really is the journal stream and python-systemd is there."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from device.infra import logsetup

ROOT = Path(__file__).resolve().parent.parent


def test_journal_stream_must_be_stderr_itself(tmp_path: Path) -> None:
    with (tmp_path / "stream").open("w") as fh:
        st = os.fstat(fh.fileno())
        assert logsetup.stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, fh)
        assert not logsetup.stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"}, fh)
        assert not logsetup.stderr_is_journal({}, fh)


def test_plain_lines_when_not_under_journald_or_without_python_systemd(tmp_path: Path) -> None:
    # A child whose stderr is a file and JOURNAL_STREAM names that very file: the journal is chosen
    # only if python-systemd is importable, else plain text (what the line format shows).
    err = tmp_path / "err"
    code = (
        "import logging, os, sys; from device.infra import logsetup;"
        "st = os.fstat(2); os.environ['JOURNAL_STREAM'] = f'{st.st_dev}:{st.st_ino}';"
        "print(logsetup.configure(logging.INFO)); logging.getLogger('x').info('hello')"
    )
    with err.open("w") as fh:
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, stderr=fh, capture_output=False, stdout=subprocess.PIPE
        )
    chosen = out.stdout.decode().strip()
    expected = "journal" if logsetup.journal_handler() is not None else "plain"
    assert chosen == expected
    if chosen == "plain":
        assert " INFO x: hello" in err.read_text()

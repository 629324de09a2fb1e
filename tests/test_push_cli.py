"""`faceonly gallery push` and `faceonly access push` against a real mosquitto that has stopped answering
(SIGSTOP: the TCP connection is accepted, nothing more): a clear error after --timeout (exit 1), where the
pusher used to die with a bare queue.Empty traceback."""

from __future__ import annotations

import base64
import signal

import numpy as np
import pytest

from device.cli import main
from device.contracts import ModelRef
from device.identity import gallery as gal
from device.identity import operator as op
from device.vision.embed import l2_normalise
from tests.broker import Broker


@pytest.fixture
def update_file(tmp_path):
    op.keygen(tmp_path / "gallery.key")
    signer = op.load_gallery_signer(tmp_path / "gallery.key")
    subjects = [gal.Subject("s1", None, l2_normalise(np.random.default_rng(0).normal(size=(1, gal.DIM))))]
    path = tmp_path / "v1.fog"
    op.write_update(path, op.snapshot(signer, subjects, 1, ModelRef("embedder", "e.tflite", "0" * 64)))
    return path


@pytest.mark.parametrize("tool", ["gallery", "access"])
def test_a_broker_that_never_confirms_the_reply_subscription_is_a_clear_error(
    tmp_path, update_file, capsys, tool
) -> None:
    terminal_key = base64.b64encode(bytes(32)).decode()
    args = [tool, "push", "--id", "t1", "--file", str(update_file), "--terminal-key", terminal_key]
    with Broker(tmp_path / "mosq") as broker:
        args += ["--broker", broker.url, "--timeout", "1"]
        # Answering: past the subscription, then nobody answers the first request.
        assert main(args) == 1
        err = capsys.readouterr().err
        first = "gallery.list" if tool == "gallery" else "access.sync"
        assert f"{tool} push failed: no reply to {first} within 1 s" in err, err
        assert broker.proc is not None
        broker.proc.send_signal(signal.SIGSTOP)
        try:
            assert main(args) == 1
        finally:
            broker.proc.send_signal(signal.SIGCONT)
        err = capsys.readouterr().err
        assert f"{tool} push failed: the reply subscription faceonly/v1/dev/t1/" in err, err
        assert "the broker did not confirm it in 1 s" in err, err

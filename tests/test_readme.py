"""The examples of the README and of docs/*.md run verbatim: every shell or Python block marked
`<!-- runnable -->` runs in a fresh copy of the repository (with the project's venv activated, as the
README says), and every other one says in its first line what it needs (`# needs: ...`). They run in
one copy, in reading order: the README, then each doc in the order of the README's Documentation table (an
example may use what an earlier one made, as a reader following along would).

Markers: `<!-- runnable -->` needs nothing; `<!-- runnable: data -->` needs ../shared/data
(missing_data: skipped locally, a failure in CI); `<!-- runnable: broker -->` runs with a mosquitto
at localhost:1883's place and terminal `gate-01` running on the demo replay, trusting the
`command.key.pub` an earlier block generated.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.broker import Broker
from tests.conftest import SHARED_DATA, missing_data

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
FENCE = re.compile(r"^(?:<!-- runnable(?:: (\w+))? -->\n)?```(\w*)\n(.*?)^```", re.S | re.M)
README_BROKER = "mqtt://localhost:1883"


DOC_LINK = re.compile(r"\]\((docs/[\w.-]+\.md)")


@dataclass(frozen=True)
class Block:
    file: str
    line: int
    lang: str
    needs: str | None  # None: not runnable; "" runnable as is; "data" / "broker"
    code: str

    @property
    def name(self) -> str:
        return f"{self.file}:{self.line}"


def documents() -> list[str]:
    """README.md, then docs/*.md in the order the README's Documentation table lists them, then any other."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("\n## Documentation") :]
    linked = list(dict.fromkeys(DOC_LINK.findall(table)))
    rest = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))
    return ["README.md", *linked, *(d for d in rest if d not in linked)]


def blocks() -> list[Block]:
    found = []
    for doc in documents():
        text = (ROOT / doc).read_text(encoding="utf-8")
        found += [
            Block(
                doc,
                text.count("\n", 0, m.start(2)) + 1,
                m.group(2),
                m.group(1) or ("" if m.group(0).startswith("<!--") else None),
                m.group(3),
            )
            for m in FENCE.finditer(text)
            if m.group(2) in ("bash", "sh", "python")
        ]
    return found


RUNNABLE = [b for b in blocks() if b.needs is not None]


def test_every_example_is_runnable_or_says_what_it_needs() -> None:
    unmarked = [b.name for b in blocks() if b.needs is None and not b.code.startswith("# needs:")]
    assert not unmarked, f"mark these runnable or start them with '# needs: ...': {unmarked}"
    covered = "\n".join(b.code for b in RUNNABLE)
    for example in (
        "faceonly run",
        "faceonly ctl",
        "faceonly audit",
        "nacl",
        "benchmark.py",
        "faceonly evaluate",
    ):
        assert example in covered, example


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh copy of the repository's files (no var/, no keys), next to a `shared` like ../shared."""
    base = tmp_path_factory.mktemp("readme")
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    repo = base / "faceonly"
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, repo / rel)
    if SHARED_DATA.parent.is_dir():
        (base / "shared").symlink_to(SHARED_DATA.parent)
    return repo


def _env() -> dict[str, str]:
    # What `. .venv/bin/activate` does.
    return {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
        "VIRTUAL_ENV": str(VENV_BIN.parent),
    }


def _run(block: Block, cwd: Path, code: str) -> None:
    cmd = ["python", "-c", code] if block.lang == "python" else ["bash", "-euo", "pipefail", "-c", code]
    res = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, (
        f"{block.name} failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    )


@pytest.fixture
def gate(checkout: Path, tmp_path: Path):
    """A broker and terminal gate-01 on the demo replay, trusting checkout/command.key.pub."""
    key = checkout / "command.key"
    if not key.exists():
        subprocess.run(
            ["faceonly", "keys", "generate", "--out", str(key)], env=_env(), check=True, cwd=checkout
        )
    conf = tmp_path / "gate.toml"
    conf.write_text(f'[control]\ncommand_public_key_file = "{key}.pub"\n', encoding="utf-8")
    with Broker(tmp_path / "mq") as broker:
        log = (tmp_path / "gate.log").open("wb")
        proc = subprocess.Popen(
            ["faceonly", "run", "--config", str(conf), "--broker", broker.url, "--id", "gate-01",
             "--state-dir", str(tmp_path / "state")],
            cwd=checkout, env=_env(), stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            text = ""
            deadline = time.monotonic() + 60
            while "connected to" not in text and time.monotonic() < deadline:
                assert proc.poll() is None, text
                time.sleep(0.2)
                text = (tmp_path / "gate.log").read_text(errors="replace")
            yield broker
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
            log.close()


@pytest.mark.parametrize("block", RUNNABLE, ids=[b.name for b in RUNNABLE])
def test_readme_example_runs(block: Block, checkout: Path, request: pytest.FixtureRequest) -> None:
    code = block.code
    if block.needs == "data" and not SHARED_DATA.is_dir():
        missing_data("../shared/data is absent")
    if block.needs == "broker":
        broker = request.getfixturevalue("gate")
        assert README_BROKER in code
        code = code.replace(README_BROKER, broker.url)
    _run(block, checkout, code)

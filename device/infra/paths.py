"""Where the models and the demo replay are, in a source checkout and after a normal `pip install`.

A checkout (editable install) uses the repository's own `models/` and `var/demo-replay/`. An installed
wheel carries the models as data files (`<prefix>/share/faceonly/models`, pyproject's data-files) and makes
the demo replay in the user's cache, since site-packages is no place to write. FACEONLY_MODELS_DIR and
FACEONLY_DEMO_DIR override both; `--models-dir` / `[vision]` settings override those.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parents[2]
INSTALLED_MODELS = Path(sys.prefix) / "share" / "faceonly" / "models"


def _in_checkout() -> bool:
    return (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / "device").is_dir()


def models_dir() -> Path:
    """FACEONLY_MODELS_DIR, else the checkout's models/, else the installed copy (named even if absent)."""
    if env := os.environ.get("FACEONLY_MODELS_DIR"):
        return Path(env)
    if _in_checkout() and (_CHECKOUT / "models").is_dir():
        return _CHECKOUT / "models"
    return INSTALLED_MODELS


def demo_dir() -> Path:
    """FACEONLY_DEMO_DIR, else the checkout's var/demo-replay, else ~/.cache/faceonly/demo-replay."""
    if env := os.environ.get("FACEONLY_DEMO_DIR"):
        return Path(env)
    if _in_checkout():
        return _CHECKOUT / "var" / "demo-replay"
    return cache_root() / "demo-replay"


def cache_root() -> Path:
    """$XDG_CACHE_HOME/faceonly (default ~/.cache/faceonly): what can be rebuilt, never frames."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "faceonly"


def faceonly_command() -> str:
    """How to run this faceonly from any shell, for the commands it prints: the `faceonly` script beside
    this interpreter (a venv's bin/, which is often not on PATH), else `python -m device`."""
    import shlex

    script = Path(sys.executable).with_name("faceonly")
    if script.is_file() and os.access(script, os.X_OK):
        return shlex.quote(str(script))
    return f"{shlex.quote(sys.executable)} -m device"

"""matplotlib for `--plots` (optional extra `plots`): imported only when plots are asked for."""

from __future__ import annotations

from typing import Any


def require_matplotlib() -> Any:
    """pyplot on the non-interactive Agg backend, or ImportError saying how to install it."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError("--plots needs matplotlib: pip install 'faceonly[plots]'") from None
    matplotlib.use("Agg")  # files only: a terminal has no display
    import matplotlib.pyplot as plt

    return plt

"""Shared helpers for the vision tests: the real model store (skips when the models are not built yet)."""

from __future__ import annotations

import pytest

from device.modelstore import ModelError, ModelStore


def model_store() -> ModelStore:
    try:
        return ModelStore()
    except ModelError as exc:
        pytest.skip(f"models not built: {exc}")

"""Shared helpers for the vision tests: the real model store (skips when the models are not built yet)."""

from __future__ import annotations

from device.infra.modelstore import ModelError, ModelStore
from tests.conftest import missing_data


def model_store() -> ModelStore:
    try:
        return ModelStore()
    except ModelError as exc:
        missing_data(f"models not built: {exc}")

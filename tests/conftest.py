"""Shared fixtures. Real data lives in ../shared/data (never copied here); tests that need it skip cleanly
on a developer's machine and FAIL in CI (CI=true), where a skipped measurement would look like a pass."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# FACEONLY_SHARED_DATA points elsewhere (tests/test_ci_data.py uses it to prove CI fails without data).
SHARED_DATA = Path(os.environ.get("FACEONLY_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        missing_data("../shared/data is absent")
    return SHARED_DATA


def missing_data(reason: str) -> NoReturn:
    """Skip outside CI; fail in CI, where the data and models must be there."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (required in CI)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def postgres_server():
    """A throwaway PostgreSQL cluster for the module's tests (tests/postgres.py)."""
    from tests.postgres import Postgres

    with Postgres() as pg:
        yield pg


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path: Path) -> str:
    """A fresh, empty database of each kind: a SQLite file, or a new database in the module's PostgreSQL."""
    if request.param == "sqlite":
        return str(tmp_path / "backend.sqlite")
    import uuid

    import psycopg

    pg = request.getfixturevalue("postgres_server")
    name = f"t{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return pg.url.rsplit("/", 1)[0] + f"/{name}"

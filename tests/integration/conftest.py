"""Database fixtures: every integration test runs against SQLite and against PostgreSQL.

PostgreSQL comes from PERFLAW_TEST_POSTGRES_URL (default: the local server at
127.0.0.1:5432, database test, user postgres). Each pytest process migrates its own schema,
so several test runs can share one server. When the server cannot be reached the PostgreSQL
cases are skipped with the reason, unless PERFLAW_REQUIRE_POSTGRES=1 (set by CI), where they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy import text

from app.db import create_database_engine
from app.migrate import upgrade_database
from app.models import Base

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _postgres_base_url() -> str:
    return os.environ.get("PERFLAW_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


def _postgres_unavailable_reason() -> str | None:
    try:
        engine = sqlalchemy.create_engine(_postgres_base_url())
        with engine.connect():
            pass
        engine.dispose()
    except sqlalchemy.exc.OperationalError as error:
        return f"PostgreSQL at {_postgres_base_url()} is unreachable: {error.orig}"
    return None


@pytest.fixture(scope="session")
def postgres_schema_url() -> Iterator[str]:
    """Create a schema of this test process's own on the PostgreSQL server and migrate it."""
    reason = _postgres_unavailable_reason()
    if reason:
        if os.environ.get("PERFLAW_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    schema = f"perflaw_test_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(_postgres_base_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{_postgres_base_url()}?options=-csearch_path%3D{schema}"
    upgrade_database(url)
    yield url
    with admin.connect() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("sqlite") / "perflaw.sqlite3"
    url = f"sqlite:///{path}"
    upgrade_database(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request) -> Iterator[str]:
    """The URL of a migrated, empty database of each kind in turn."""
    if request.param == "sqlite":
        url = request.getfixturevalue("sqlite_url")
    else:
        url = request.getfixturevalue("postgres_schema_url")
    _empty_all_tables(url)
    yield url


def _empty_all_tables(url: str) -> None:
    engine = create_database_engine(url)
    table_names = [table.name for table in reversed(Base.metadata.sorted_tables)]
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text(f"TRUNCATE {', '.join(table_names)} RESTART IDENTITY CASCADE"))
        else:
            for name in table_names:
                connection.execute(text(f"DELETE FROM {name}"))
    engine.dispose()


@pytest.fixture
def service_env(database_url: str, tmp_path: Path, monkeypatch) -> dict[str, str]:
    """Point the settings at the test database and a fresh data folder; clear cached objects."""
    from app.runtime import reset_cached_state

    environment = {
        "PERFLAW_DATABASE_URL": database_url,
        "PERFLAW_DATA_DIR": str(tmp_path / "data"),
        "PERFLAW_WORKERS": "0",
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    reset_cached_state()
    yield environment
    reset_cached_state()


@pytest.fixture
def client(service_env):
    """A TestClient of a fresh app on the test database, in single-user (anonymous) mode."""
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app()) as test_client:
        yield test_client


@pytest.fixture
def storage_files(service_env) -> callable:
    """Return a function listing every file under the service's storage folder (scratch files included)."""
    root = Path(service_env["PERFLAW_DATA_DIR"]) / "storage"

    def list_files() -> list[Path]:
        return sorted(path for path in root.rglob("*") if path.is_file()) if root.exists() else []

    return list_files

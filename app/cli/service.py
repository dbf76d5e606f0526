"""Commands that run or administer the service: serve, worker, db, keys."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from app.cli.output import EXIT_BAD_INPUT, fail
from app.logging_setup import configure_logging
from app.settings import get_settings

logger = logging.getLogger(__name__)

db_app = typer.Typer(help="Manage the database schema.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port to listen on.")] = 8000,
    no_worker: Annotated[bool, typer.Option("--no-worker", help="Do not run jobs in this process.")] = False,
    no_migrate: Annotated[bool, typer.Option("--no-migrate", help="Do not upgrade the schema at start.")] = False,
) -> None:
    """Run the REST API (and, by default, PERFLAW_WORKERS in-process job workers)."""
    import uvicorn

    from app import auth
    from app.db import session_scope
    from app.main import create_app
    from app.migrate import upgrade_database

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if not no_migrate:
        upgrade_database(settings.resolved_database_url)

    with session_scope() as session:
        keys_exist = auth.active_keys_exist(session)
    loopback = auth.is_loopback_host(host)
    if not keys_exist and not loopback:
        fail(
            f"refusing to listen on {host} without API keys: anyone could reach the data. "
            "Create a key with `perflaw keys create --tenant NAME`, or listen on 127.0.0.1.",
            EXIT_BAD_INPUT,
        )

    stop_workers = None
    if not no_worker and settings.workers > 0:
        from worker.runner import start_in_process_workers

        stop_workers = start_in_process_workers(settings.workers)
    logger.info("serving", extra={"host": host, "port": port, "workers": 0 if no_worker else settings.workers})
    try:
        uvicorn.run(create_app(settings, allow_anonymous=not keys_exist and loopback), host=host, port=port, log_config=None)
    finally:
        if stop_workers:
            stop_workers()


def worker(
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    once: Annotated[bool, typer.Option("--once", help="Run at most one job, then exit.")] = False,
) -> None:
    """Run a job worker: it claims queued jobs from the database and runs them."""
    if device not in ("auto", "cpu", "cuda"):
        fail(f"invalid --device {device!r}: use auto, cpu or cuda")
    _require_current_schema()
    from worker.runner import run_worker

    raise typer.Exit(run_worker(device=device, once=once))


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or upgrade the database schema to the newest migration."""
    from app.migrate import upgrade_database

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade_database(settings.resolved_database_url)
    typer.echo(f"database schema is up to date ({_redact(settings.resolved_database_url)})")


@keys_app.command("create")
def keys_create(tenant: Annotated[str, typer.Option(help="Tenant that owns the key; created if new.")]) -> None:
    """Create an API key and print it once; only its hash is stored."""
    from app import auth
    from app.db import session_scope

    if not tenant.strip() or len(tenant) > 100:
        fail("--tenant must be 1 to 100 characters")
    _require_current_schema()
    with session_scope() as session:
        secret = auth.create_api_key(session, tenant.strip())
    typer.echo(secret)
    typer.echo(f"created a key for tenant {tenant.strip()!r}; it is shown only this once", err=True)


@keys_app.command("revoke")
def keys_revoke(key_or_prefix: Annotated[str, typer.Argument(help="The whole key, or its first 8 characters.")]) -> None:
    """Revoke an API key."""
    from app import auth
    from app.db import session_scope

    _require_current_schema()
    try:
        with session_scope() as session:
            revoked = auth.revoke_api_key(session, key_or_prefix)
    except ValueError as error:
        fail(str(error))
    if revoked == 0:
        fail(f"no active key matches {key_or_prefix[:auth.KEY_PREFIX_LENGTH]!r}...: it is unknown, mistyped or already revoked")
    typer.echo(f"revoked the key {key_or_prefix[:auth.KEY_PREFIX_LENGTH]}...")


def _require_current_schema() -> None:
    """Exit with status 2 and the command that fixes it unless the database has the newest schema.

    A missing SQLite file is reported without being created, so a mistyped PERFLAW_DATA_DIR
    leaves nothing behind.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from app.db import get_engine
    from app.migrate import schema_is_current

    url = get_settings().resolved_database_url
    fix = "run `perflaw db upgrade` (or start `perflaw serve`, which upgrades it) first"
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and not Path(parsed.database).exists():
        fail(f"no database at {parsed.database}: {fix}")
    try:
        current = schema_is_current(get_engine())
    except SQLAlchemyError as error:
        fail(f"cannot read the schema of {_redact(url)}: {error.__class__.__name__}: {str(error).splitlines()[0]}")
    if not current:
        fail(f"the database {_redact(url)} does not have the newest perflaw schema: {fix}")


def _redact(url: str) -> str:
    scheme, separator, rest = url.partition("://")
    if "@" in rest:
        credentials, _, host = rest.rpartition("@")
        rest = credentials.split(":")[0] + ":***@" + host if ":" in credentials else rest
    return scheme + separator + rest


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.command()(worker)
    app.add_typer(db_app, name="db")
    app.add_typer(keys_app, name="keys")

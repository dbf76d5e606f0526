"""Alembic environment: migrates the database named by the perflaw settings."""

from alembic import context

from app.db import create_database_engine
from app.models import Base
from app.settings import get_settings


def run_migrations() -> None:
    url = context.config.attributes.get("database_url") or get_settings().resolved_database_url
    engine = create_database_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations()

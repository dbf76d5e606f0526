"""Service settings, read from the environment with the prefix PERFLAW_."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every setting of the service and worker.

    The job timings follow one schedule: a running job renews its lease every
    heartbeat_s; a job whose lease (lease_s) passes without renewal is taken back. A job that
    fails with a transient error waits retry_base_s * 2 ** (attempt - 1) seconds, capped at
    retry_max_s, before it is tried again, up to max_attempts attempts in all.
    """

    model_config = SettingsConfigDict(env_prefix="PERFLAW_", extra="ignore")

    data_dir: Path = Field(default=Path("perflaw-data"), description="Folder for storage and the default SQLite file.")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default sqlite in data_dir.")
    max_upload_mb: float = 200.0
    max_decompressed_mb: float = 2000.0
    max_compression_ratio: float = 200.0
    max_line_bytes: int = 1_000_000
    max_users: int = 50_000_000
    max_items: int = 50_000_000
    max_interactions: int = 500_000_000
    max_json_body_kb: int = 1024
    profile_inline_max_interactions: int = Field(
        default=5_000_000, description="Larger datasets are profiled by a background job (202) instead of in the request."
    )
    max_train_layers: int = 48
    max_train_d_model: int = 4096
    max_train_epochs: int = 2000
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    workers: int = Field(default=1, ge=0, description="In-process workers that `perflaw serve` starts.")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    lease_s: float = 60.0
    heartbeat_s: float = 10.0
    poll_interval_s: float = 1.0
    retry_base_s: float = 5.0
    retry_max_s: float = 600.0
    max_attempts: int = 3

    @property
    def storage_dir(self) -> Path:
        return self.data_dir / "storage"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'perflaw.sqlite3').resolve()}"


@lru_cache
def get_settings() -> Settings:
    """Return the process-wide settings; tests clear the cache to change them."""
    return Settings()

"""Process-wide cached objects, and a way to drop them when settings change (tests, CLI)."""

from __future__ import annotations

from app.db import get_engine, get_session_factory
from app.law_store import clear_law_caches
from app.settings import get_settings


def reset_cached_state() -> None:
    """Forget the cached settings, engine, session factory and laws, disposing the engine's pool."""
    if get_engine.cache_info().currsize:
        get_engine().dispose()
    get_engine.cache_clear()
    get_session_factory.cache_clear()
    get_settings.cache_clear()
    clear_law_caches()

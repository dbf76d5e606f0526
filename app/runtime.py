"""Process-wide state: cached objects, a way to drop them when settings change, thread waits."""

from __future__ import annotations

import os

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


def prefer_passive_thread_waits() -> None:
    """Make idle OpenMP threads sleep rather than spin, unless OMP_WAIT_POLICY is already set.

    Call it before torch is imported: the OpenMP runtime reads the variable once, when it
    loads. Spinning threads that share cores with other busy processes slow training down
    badly. Measured on 2 cores with another process keeping one core busy: one epoch of a
    small SASRec on ml-100k with 2 torch threads took 15 s with spinning threads and 0.29 s
    with sleeping ones. One thread took 0.28 s. docs/benchmarks.md has the command.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

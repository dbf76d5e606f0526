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
    loads. Spinning threads that share cores with a busier process slow training down
    badly. On 2 cores, an epoch of a small SASRec on ml-100k with 2 torch threads took
    15.2 s with spinning threads and 0.21 s with sleeping ones while a process of higher
    priority kept one core busy. On free cores, sleeping threads cost 0.26 s against 0.16 s.
    bench/bench_thread_waits.py measures it; docs/benchmarks.md has the table.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

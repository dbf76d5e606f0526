"""Process settings made before torch loads."""

from __future__ import annotations

import os

from app.runtime import prefer_passive_thread_waits


def test_thread_waits_become_passive_when_unset(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)

    prefer_passive_thread_waits()

    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"


def test_thread_waits_set_by_operator_are_kept(monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")

    prefer_passive_thread_waits()

    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"

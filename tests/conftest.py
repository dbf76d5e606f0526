"""Fixtures shared by every test tier."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The folder of real public datasets, named by PERFLAW_DATA_DIR.

    It defaults to shared/data in the folder that contains the repository. Tests that use it
    are skipped, with the path in the reason, when the folder is absent.
    """
    path = Path(os.environ.get("PERFLAW_DATA_DIR") or REPOSITORY_ROOT.parent / "shared" / "data")
    if not path.is_dir():
        pytest.skip(f"real datasets not available: {path} does not exist (set PERFLAW_DATA_DIR)")
    return path

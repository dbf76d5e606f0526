"""Local file storage for datasets and training checkpoints.

Keys are relative paths chosen by the service, never by a client, so a user-supplied name
cannot reach outside the storage folder. Writes go to a temporary file first and are renamed
into place, so a reader never sees half a file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from app.settings import get_settings


class Storage:
    """Files under one root folder, addressed by relative keys such as "datasets/12.npz"."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        """Return the absolute path of key; raises ValueError for keys that leave the root."""
        resolved = (self.root / key).resolve()
        if not resolved.is_relative_to(self.root.resolve()):
            raise ValueError(f"storage key {key!r} is outside the storage folder")
        return resolved

    @contextmanager
    def atomic_write(self, key: str) -> Iterator[Path]:
        """Yield a temporary path to write; on success it is renamed to key, on error removed."""
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary_name = tempfile.mkstemp(dir=target.parent, prefix=".partial-")
        os.close(handle)
        temporary = Path(temporary_name)
        try:
            yield temporary
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)

    def temporary_file(self) -> Path:
        """Create an empty file in the storage's scratch folder and return its path."""
        scratch = self.root / "tmp"
        scratch.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=scratch, prefix="upload-")
        os.close(handle)
        return Path(name)

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self.path(key).exists()


def dataset_key(dataset_id: int) -> str:
    return f"datasets/{dataset_id}.npz"


def checkpoint_key(job_id: int) -> str:
    return f"checkpoints/job-{job_id}.pt"


def get_storage() -> Storage:
    """Return the storage rooted at the configured data directory."""
    return Storage(get_settings().storage_dir)

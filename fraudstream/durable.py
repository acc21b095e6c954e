"""Files that survive a crash: fsync, checksums, and JSON replaced whole or not at all.

The checkpoint store, the model artifact, the lifecycle's request files and the state trees
of a checkpoint make files durable the same way; this module is that way, below every
package that writes them.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


def fsync_path(path: Path) -> None:
    """Flush a file, or a directory's entries (a rename in it), to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_json(path: Path, data: Any, indent: int | None = 1, sort_keys: bool = False,
               default: Any = None) -> None:
    """Write ``data`` as JSON under a temporary name beside ``path``, fsync it, rename it
    onto ``path``: a reader, or a crash, finds the old file or the new one, never a part."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as fh:
            json.dump(data, fh, indent=indent, sort_keys=sort_keys, default=default)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)

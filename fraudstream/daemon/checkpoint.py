"""Atomic checkpoint directories with a checksum manifest.

A checkpoint is written in a fixed order, so that a crash at any point leaves either the
previous checkpoint or the new one, never a half of one that looks whole:

1. write every part into a fresh ``.tmp-*`` directory beside the checkpoints;
2. fsync each file;
3. write ``manifest.json`` (size and sha256 of every part, plus metadata) and fsync it;
4. fsync the temporary directory, rename it to ``ckpt-<seq>``, fsync the parent;
5. only now may the caller commit Kafka offsets (they are inside the checkpoint already);
6. prune: keep the newest ``keep``, the best by ``score`` and up to ``keep`` tagged ones.

Reading checks the manifest: a missing, truncated or altered file makes the checkpoint
invalid, and :meth:`CheckpointStore.latest_valid` moves on to the previous one with a warning.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fraudstream.durable import fsync_path, sha256_file, write_json
from fraudstream.daemon.exceptions import CheckpointCorrupt, CheckpointDirBusy

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
PREFIX = "ckpt-"
TMP_PREFIX = ".tmp-"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path
    seq: int
    created_at: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None

    @property
    def valid(self) -> bool:
        return self.problem is None

    @property
    def name(self) -> str:
        return self.path.name


def _files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST)


def write_manifest(root: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Fsync every file under ``root`` and write a manifest of their sizes and checksums."""
    files = {}
    for path in _files_under(root):
        fsync_path(path)
        files[str(path.relative_to(root))] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
    manifest = {"schema_version": SCHEMA_VERSION, "created_at": time.time(), "meta": meta, "files": files}
    write_json(root / MANIFEST, manifest, sort_keys=True)
    return manifest


def verify_manifest(root: Path) -> dict[str, Any]:
    """Return the manifest of ``root`` or raise :class:`CheckpointCorrupt` saying what is wrong."""
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except FileNotFoundError as exc:
        raise CheckpointCorrupt(f"{root.name}: no {MANIFEST}") from exc
    except (OSError, ValueError) as exc:
        raise CheckpointCorrupt(f"{root.name}: unreadable {MANIFEST}: {exc}") from exc
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise CheckpointCorrupt(f"{root.name}: manifest schema {manifest.get('schema_version')!r}")
    for rel, expect in manifest.get("files", {}).items():
        path = root / rel
        if not path.is_file():
            raise CheckpointCorrupt(f"{root.name}: {rel} is missing")
        size = path.stat().st_size
        if size != expect["bytes"]:
            raise CheckpointCorrupt(f"{root.name}: {rel} has {size} bytes, manifest says {expect['bytes']}")
        if sha256_file(path) != expect["sha256"]:
            raise CheckpointCorrupt(f"{root.name}: {rel} checksum mismatch")
    return manifest


class CheckpointStore:
    """The checkpoints of one daemon, in one directory, newest by sequence number."""

    def __init__(self, directory: Path, keep: int = 3):
        self.directory = Path(directory)
        self.keep = keep
        self._lock_fd: int | None = None

    def lock(self) -> None:
        """Take the directory for this process (released when it exits, even by SIGKILL).

        Two daemons writing one checkpoint directory would prune each other's work and
        resume from each other's offsets; the second one to start fails here instead.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise CheckpointDirBusy(f"{self.directory} is in use by another process (pid {holder})") from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _dirs(self) -> list[tuple[int, Path]]:
        if not self.directory.is_dir():
            return []
        found = []
        for path in self.directory.iterdir():
            if path.is_dir() and path.name.startswith(PREFIX):
                try:
                    found.append((int(path.name[len(PREFIX):]), path))
                except ValueError:
                    continue
        return sorted(found, reverse=True)

    def list(self, verify: bool = True) -> list[CheckpointInfo]:
        """Every checkpoint, newest first; with ``verify`` each one's checksums are checked."""
        infos = []
        for seq, path in self._dirs():
            try:
                manifest = verify_manifest(path) if verify else json.loads((path / MANIFEST).read_text())
                infos.append(CheckpointInfo(path, seq, manifest["created_at"], manifest["meta"]))
            except (CheckpointCorrupt, OSError, ValueError, KeyError) as exc:
                infos.append(CheckpointInfo(path, seq, problem=str(exc)))
        return infos

    def latest_valid(self) -> CheckpointInfo | None:
        """The newest checkpoint whose files match its manifest; skipped ones are logged."""
        for seq, path in self._dirs():
            try:
                manifest = verify_manifest(path)
            except CheckpointCorrupt as exc:
                log.warning("skipping corrupt checkpoint %s: %s", path, exc)
                continue
            return CheckpointInfo(path, seq, manifest["created_at"], manifest["meta"])
        return None

    def save(self, write_parts: Callable[[Path], dict[str, Any]]) -> CheckpointInfo:
        """Write a checkpoint with ``write_parts(tmpdir) -> meta``, atomically (steps 1-4, 6)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        existing = self._dirs()
        seq = existing[0][0] + 1 if existing else 1
        final = self.directory / f"{PREFIX}{seq:08d}"
        tmp = self.directory / f"{TMP_PREFIX}{PREFIX}{seq:08d}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            meta = write_parts(tmp)  # 1
            manifest = write_manifest(tmp, meta)  # 2, 3
            fsync_path(tmp)  # 4
            os.rename(tmp, final)
            fsync_path(self.directory)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.prune()  # 6
        return CheckpointInfo(final, seq, manifest["created_at"], manifest["meta"])

    def prune(self, keep: int | None = None) -> list[Path]:
        """Delete all but the newest ``keep``, the best-scoring and the newest tagged ones."""
        keep = self.keep if keep is None else keep
        infos = [i for i in self.list(verify=False)]
        keepers = {i.path for i in infos[:keep]}
        scored = [i for i in infos if i.valid and i.meta.get("score") is not None]
        if scored:
            keepers.add(max(scored, key=lambda i: i.meta["score"]).path)
        keepers.update(i.path for i in [i for i in infos if i.valid and i.meta.get("tags")][:keep])
        removed = []
        for info in infos:
            if info.path not in keepers:
                shutil.rmtree(info.path, ignore_errors=True)
                removed.append(info.path)
        for leftover in self.directory.glob(f"{TMP_PREFIX}*"):
            if not leftover.name.endswith(f"-{os.getpid()}"):
                shutil.rmtree(leftover, ignore_errors=True)
        return removed

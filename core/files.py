"""Writing outputs safely: errors that name the folder, locks, checksums, atomic JSON, fsync."""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import uuid
from contextlib import contextmanager
from pathlib import Path

from core.errors import PublishError

# errno values a retry cannot fix: somebody has to free space or fix permissions
PERMANENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EFBIG})


@contextmanager
def output_guard(where: Path, published: Path | None = None):
    """Turn an OSError while writing outputs into a PublishError that names the folder, the
    file and the reason, and says the published outputs are untouched."""
    try:
        yield
    except PublishError:
        raise
    except OSError as e:
        reason = os.strerror(e.errno) if e.errno else str(e)
        file = f" ({e.filename})" if e.filename and str(e.filename) != str(where) else ""
        kept = f"; the published outputs ({published}) are untouched" if published else \
            "; published outputs are untouched"
        raise PublishError(f"cannot write outputs to {where}: {reason}{file}{kept}",
                           retryable=e.errno not in PERMANENT_ERRNOS) from e


@contextmanager
def file_lock(path: Path):
    """An exclusive advisory lock (flock) held for the block; waits for other holders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_json_atomic(path: Path, obj) -> None:
    """Write JSON to a temporary file, fsync it and rename it over ``path``: readers see the
    old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps(obj, indent=2, default=str))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_json(path: Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    try:
        fsync_file(path)
    except OSError:  # some file systems do not fsync directories
        pass


def fsync_tree(root: Path) -> None:
    for p in sorted(root.rglob("*"), reverse=True):
        if p.is_file() and not p.is_symlink():
            fsync_file(p)
        elif p.is_dir():
            fsync_dir(p)
    fsync_dir(root)

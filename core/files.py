"""Writing outputs safely: errors that name the folder, locks, checksums, atomic JSON, fsync,
private folders."""
from __future__ import annotations

import errno
import fcntl
import functools
import hashlib
import json
import os
import stat
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


PRIVATE_DIR, PRIVATE_FILE = 0o700, 0o600


def make_private(root: Path) -> None:
    """``root`` and everything under it readable by the owner only: folders 0700, files 0600.
    Links are not followed (what they point at is not ours to change); a file removed while
    the tree is walked (a spill file) is passed over."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name, mode in [(n, PRIVATE_DIR) for n in dirnames] + [(n, PRIVATE_FILE) for n in filenames]:
            path = os.path.join(dirpath, name)
            try:
                if not stat.S_ISLNK(os.lstat(path).st_mode):
                    os.chmod(path, mode)
            except FileNotFoundError:
                pass
    os.chmod(root, PRIVATE_DIR)


def private_folder(root_of):
    """Decorate a step that writes into a private folder (``root_of(*args, **kwargs)`` gives
    it, e.g. the identifiable zone): the folder is made 0700 before the step writes anything,
    so nobody else can reach what it writes whatever the umask (0644 files under umask 022),
    and after the step, failed or not, every folder in it is 0700 and every file 0600.
    Modes, not a process umask: the same steps also write outputs meant to be shared (the
    pseudonymised tables, the IG report)."""
    def wrap(step):
        @functools.wraps(step)
        def run(*args, **kwargs):
            root = Path(root_of(*args, **kwargs))
            root.mkdir(parents=True, exist_ok=True)
            os.chmod(root, PRIVATE_DIR)
            try:
                return step(*args, **kwargs)
            finally:
                make_private(root)
        return run
    return wrap

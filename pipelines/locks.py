"""One writer at a time: an advisory lock file per thing two runs must not write at once (a
source's crawl, a workspace's weekly retrain).

The lock is `flock` on the file, so the kernel releases it when its holder dies however it dies
(SIGKILL, a power cut leaves no process holding it): a lock file left by a dead process is
taken over, never obeyed. The file also holds who took it, when and with what command, so a
second run can say whom it is waiting for. `flock` holds between processes of one machine (and
containers sharing its kernel and the volume); it is not a lock across machines on NFS.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

LOCKS_DIR = ".locks"  # beside the data root (data/.locks): outside every DVC-tracked folder, git-ignored


@dataclass(frozen=True)
class Holder:
    """Who holds a lock, as its file records it."""

    pid: int
    host: str
    user: str
    command: str
    since: str  # ISO 8601, UTC

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} ({self.user}: {self.command}) since {self.since}"


class LockHeld(RuntimeError):
    """Another live process holds the lock; the message names it."""

    def __init__(self, what: str, path: Path, holder: Holder | None) -> None:
        who = holder.describe() if holder else "a process that has not written its name yet"
        super().__init__(f"{what} is already running: {who} (lock {path}); wait for it, or pass --wait")
        self.holder = holder


def locks_dir(data_root: Path) -> Path:
    """Where the locks of a data root live: `<data root's parent>/.locks` (data/raw → data/.locks)."""
    return data_root.resolve().parent / LOCKS_DIR


def read_holder(path: Path) -> Holder | None:
    """The holder a lock file names, or None for an empty or unreadable one."""
    try:
        return Holder(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def this_holder() -> Holder:
    return Holder(
        pid=os.getpid(),
        host=socket.gethostname(),
        user=_user(),
        command=" ".join([Path(sys.orig_argv[0]).name, *sys.orig_argv[1:]])[:200],  # as typed: `python -m …`
        since=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )


def holder_if_held(path: Path) -> Holder | None:
    """Who holds the lock at `path` now, or None if it is free: a look before starting something
    slow, not a promise (take it with `exclusive`)."""
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # shared: two lookers do not refuse each other
    except BlockingIOError:
        return read_holder(path) or Holder(0, "?", "?", "a process that has not written its name yet", "?")
    finally:
        os.close(fd)
    return None


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's arbitrary uid)
        return str(os.getuid())


@contextlib.contextmanager
def exclusive(
    path: Path,
    what: str,
    *,
    wait: bool = False,
    poll_s: float = 2.0,
    progress: Callable[[str], None] = print,
) -> Iterator[Holder | None]:
    """Hold the lock at `path` for the body. Held by a live process: raise LockHeld, or with
    `wait` say whom it waits for and wait. Yields the dead holder it took over, if any."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = read_holder(path)
                if not wait:
                    raise LockHeld(what, path, holder) from None
                if not told:
                    progress(f"{what}: waiting for {holder.describe() if holder else 'the holder'} (lock {path})")
                    told = True
                time.sleep(poll_s)
        previous = read_holder(path)
        taken_over = previous if previous and previous.pid != os.getpid() and not pid_alive(previous.pid) else None
        if taken_over:
            progress(f"{what}: took over the lock left by {taken_over.describe()} (no longer running)")
        _write_holder(fd, this_holder())
        try:
            yield taken_over
        finally:
            os.ftruncate(fd, 0)  # released: the file stays (recreating it would race another taker)
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def _write_holder(fd: int, holder: Holder) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(asdict(holder)) + "\n").encode("utf-8"), 0)

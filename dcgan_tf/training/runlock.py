"""One writer per run: an exclusive lock on the run for the whole training process.

The lock is an advisory `flock` on `<run checkpoint folder>/.lock`, held through an open file. The
kernel releases it when the process ends in any way, SIGKILL included, so a crash never leaves a
stale lock to clean up. The file keeps the holder's PID and host so that a second `--train` can say
who holds the run. --import_tf1, which writes a new run's first checkpoint, holds it too. Read-only
actions (test grid, --generate, --eval, --export, --report) never take it; --runs asks who holds it.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Optional

from dcgan_tf.errors import UserError
from dcgan_tf.runs import LOCK_FILE

try:
    import fcntl
except ImportError:  # Not on POSIX: no lock (training still works; two writers are not detected).
    fcntl = None


def _locked(handle, tries: int = 3) -> bool:
    """Takes the exclusive lock, trying again briefly: a --runs asking who holds the run (holder())
    has a shared lock on it for an instant."""
    for attempt in range(tries):
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            if attempt + 1 < tries:
                time.sleep(0.05)
    return False


def holder(folder: str) -> Optional[str]:
    """Who is training the run in `folder` now ("process N on HOST (since ...)"), or None. A shared
    lock tried and let go at once: it fails only while a training holds the run."""
    path = os.path.join(folder, LOCK_FILE)
    if fcntl is None or not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return handle.read().strip() or "another process"
    return None  # Closing the file let the shared lock go.


class RunLock:
    """`with RunLock(folder, run_name):` holds the run for the block; UserError if another process does."""

    def __init__(self, folder: str, run_name: str):
        self.path = os.path.join(folder, LOCK_FILE)
        self.run_name = run_name
        self._file = None

    def acquire(self) -> "RunLock":
        if fcntl is None:
            return self
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")
        if not _locked(handle):
            handle.seek(0)
            who = handle.read().strip() or "another process"
            handle.close()
            raise UserError(
                f"run {self.run_name} is being trained by {who}; only one --train may write a run. Wait for "
                f"it to finish (or stop it with Ctrl-C), or train a new run beside it (--run NEW_NAME). "
                f"Test grids, --generate, --eval and --export work on it meanwhile.") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} on {socket.gethostname()} "
                     f"(since {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())})\n")
        handle.flush()
        self._file = handle
        return self

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # Closing the file releases the flock.
            self._file = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

"""Running DVC stages (and other pipeline commands) as child processes for Prefect tasks: the
output streams to the task's log line by line, a failure carries the stage's own message, and a
stage DVC found up to date is reported as skipped.

Plain functions, no Prefect imports: the flows wrap them in tasks."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

# TensorFlow's C++ log lines say nothing a user can act on; they are not a stage's message.
_NOISE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [EWI] |^WARNING: All log messages before absl|^I0000 |^W0000 "
)
_SKIPPED = re.compile(r"Stage '([^']+)' didn't change, skipping|Stage '([^']+)' is cached - skipping")


class StageFailed(RuntimeError):
    """A stage exited non-zero or ran past its timeout; the message is the stage's own."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(f"{stage}: {message}")
        self.stage = stage


@dataclass(frozen=True)
class StageRun:
    stage: str
    ran: bool  # False: DVC found it up to date
    seconds: float
    tail: tuple[str, ...]


# Stage processes running now, so a stopped flow can stop them (they run in sessions of their own).
RUNNING: set[subprocess.Popen] = set()


def stop_running_stages() -> None:
    for process in list(RUNNING):
        _kill(process)


def failure_message(lines: Sequence[str]) -> str:
    """The line that says why: for a stage, its own last message before DVC's `ERROR: failed to
    reproduce…`; for any other DVC command, DVC's ERROR line itself."""
    meaningful = [line.strip() for line in lines if line.strip() and not _NOISE.search(line)]
    dvc_errors = [i for i, line in enumerate(meaningful) if line.startswith("ERROR:")]
    if dvc_errors:
        first = meaningful[dvc_errors[0]]
        before = [line for line in meaningful[: dvc_errors[0]] if not line.startswith(("Running stage", ">"))]
        if "failed to reproduce" in first and before:
            return before[-1]
        return first.removeprefix("ERROR: ")
    return meaningful[-1] if meaningful else "failed with no output"


def was_skipped(lines: Sequence[str], stage: str) -> bool:
    return any((m := _SKIPPED.search(line)) and stage in m.groups() for line in lines)


def project_env(root: Path) -> dict[str, str]:
    """The child's environment: this interpreter's bin first on PATH (stages call `python` and
    `dvc`), unbuffered output so progress lines arrive as they are printed."""
    bin_dir = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if not path.startswith(bin_dir + os.pathsep):
        path = f"{bin_dir}{os.pathsep}{path}"
    return {**os.environ, "PATH": path, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}


def run_command(
    command: Sequence[str],
    root: Path,
    name: str,
    timeout_s: float,
    log: Callable[[str], None] = print,
    env: dict[str, str] | None = None,
) -> tuple[float, list[str]]:
    """Run `command` in `root`, handing each output line to `log`; (seconds, last lines). A
    non-zero exit or the timeout raises StageFailed with the command's own message."""
    started = time.monotonic()
    tail: deque[str] = deque(maxlen=200)
    # Its own session, so a timeout can stop the stage and everything it started; and if this
    # process is stopped (SIGTERM, Ctrl-C), the stage is stopped with it rather than left running.
    with subprocess.Popen(
        list(command),
        cwd=root,
        env=env or project_env(root),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        start_new_session=True,
    ) as process:
        assert process.stdout is not None
        RUNNING.add(process)
        try:
            for line in process.stdout:
                line = line.rstrip("\n")
                tail.append(line)
                if line.strip() and not _NOISE.search(line):
                    log(line)
                if time.monotonic() - started > timeout_s:
                    _kill(process)
                    raise StageFailed(name, f"timed out after {timeout_s / 60:.0f} min")
            code = process.wait()
        except BaseException:
            _kill(process)
            raise
        finally:
            RUNNING.discard(process)
    if code != 0:
        raise StageFailed(name, failure_message(list(tail)))
    return time.monotonic() - started, list(tail)


def _kill(process: subprocess.Popen) -> None:
    import signal

    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def repro(stage: str, root: Path, timeout_s: float, log: Callable[[str], None] = print) -> StageRun:
    """`dvc repro --single-item STAGE`: DVC runs it only if its inputs changed."""
    seconds, tail = run_command(["dvc", "repro", "--single-item", stage], root, stage, timeout_s, log)
    return StageRun(stage, not was_skipped(tail, stage), seconds, tuple(tail[-20:]))


def stage_command(root: Path, stage: str) -> str:
    """A stage's command as dvc.yaml defines it (foreach resolved), so a flow never restates it."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        found = repo.stage.collect(stage)
    if not found:
        raise StageFailed(stage, "no such stage in dvc.yaml")
    return str(found[0].cmd)

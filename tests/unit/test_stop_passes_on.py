"""Stopping a `seamline` command stops what it started (pipelines/cli/common.run_module): the
signal reaches the child (the flow, a crawl), which stops its own children, and the command
exits with the child's status instead of leaving it running orphaned."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

# The child `run_module` starts: it says it is ready, then on SIGTERM or SIGINT records which
# signal stopped it and exits 128 + N, as flows.weekly_retrain does.
CHILD = textwrap.dedent(
    """
    import os, signal, sys, time
    from pathlib import Path
    def stop(signum, frame):
        Path(sys.argv[1]).write_text(str(signum))
        os._exit(128 + signum)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(os.getpid(), flush=True)
    time.sleep(120)
    """
)
PARENT = (
    "import sys; from pipelines.cli.common import run_module; raise SystemExit(run_module(sys.argv[1], sys.argv[2:]))"
)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stopping_the_command_stops_its_child_and_exits_with_the_childs_status(
    tmp_path: Path, signum: signal.Signals
) -> None:
    module = tmp_path / "stoppable_child.py"
    module.write_text(CHILD)
    record = tmp_path / "stopped-by"
    command = subprocess.Popen(
        [sys.executable, "-c", PARENT, "stoppable_child", str(record)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.getcwd()])},
        stdout=subprocess.PIPE,
        text=True,
    )
    child = int(command.stdout.readline())
    command.send_signal(signum)  # to the command alone, as `kill PID` or a process supervisor sends it
    assert command.wait(timeout=30) == 128 + signum
    assert record.read_text() == str(int(signum))
    deadline = time.monotonic() + 10
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child), "the child outlived the stopped command"

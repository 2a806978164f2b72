"""One writer at a time (pipelines/locks.py): a second taker is refused naming the holder, or
waits for it; the lock of a process that died is taken over, never obeyed."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from pipelines.locks import Holder, LockHeld, exclusive, locks_dir, read_holder

# A second process holding the lock until its stdin closes; it prints "held" once it has it.
HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from pipelines.locks import exclusive
    with exclusive(Path(sys.argv[1]), "the test's holder"):
        print("held", flush=True)
        sys.stdin.read()
    """
)


def hold(path: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    return process


def test_a_second_taker_is_refused_naming_the_holder(tmp_path: Path) -> None:
    path = tmp_path / "crawl-demo.lock"
    holder = hold(path)
    try:
        with pytest.raises(LockHeld) as refused, exclusive(path, "the crawl of demo"):
            pass
        message = str(refused.value)
        assert f"pid {holder.pid}" in message and "the crawl of demo is already running" in message
        assert "since 20" in message and "--wait" in message
        assert refused.value.holder is not None and refused.value.holder.pid == holder.pid
    finally:
        holder.communicate("")
    with exclusive(path, "the crawl of demo") as taken_over:  # released with its holder's exit
        assert taken_over is None  # it released in good order: nothing to take over
        assert read_holder(path).pid != holder.pid


def test_wait_waits_for_the_holder_then_takes_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "retrain.lock"
    holder = hold(path)
    said: list[str] = []
    threading.Timer(1.0, holder.stdin.close).start()  # the holder lets go in a second
    started = time.monotonic()
    with exclusive(path, "a weekly retrain", wait=True, poll_s=0.05, progress=said.append):
        assert time.monotonic() - started >= 0.9
        assert holder.wait(timeout=10) == 0
    assert len(said) == 1 and "waiting for" in said[0] and f"pid {holder.pid}" in said[0]


def test_the_lock_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "crawl-demo.lock"
    holder = hold(path)
    holder.kill()  # SIGKILL: no release in good order, its name stays in the file
    holder.wait(timeout=10)
    assert read_holder(path).pid == holder.pid
    said: list[str] = []
    with exclusive(path, "the crawl of demo", progress=said.append) as taken_over:
        assert taken_over is not None and taken_over.pid == holder.pid
        assert read_holder(path).pid != holder.pid  # now names this process
    assert said and "took over the lock left by" in said[0] and "no longer running" in said[0]


def test_an_unreadable_lock_file_does_not_block(tmp_path: Path) -> None:
    path = tmp_path / "crawl-demo.lock"
    path.write_text("not json")
    with exclusive(path, "the crawl of demo") as taken_over:
        assert taken_over is None
        assert json.loads(path.read_text())["pid"] > 0


def test_locks_sit_beside_the_data_root_outside_what_dvc_tracks(tmp_path: Path) -> None:
    assert locks_dir(tmp_path / "data" / "raw") == (tmp_path / "data" / ".locks").resolve()
    assert "since" in Holder(1, "h", "u", "c", "2026-12-04T00:00:00Z").describe()

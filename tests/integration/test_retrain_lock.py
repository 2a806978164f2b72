"""One weekly retrain per workspace: a second `seamline retrain` names the running one and exits
3 before starting anything, and the flow itself (what a deployment runs) refuses the same way."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from flows.weekly_retrain import retrain_lock, weekly_retrain
from pipelines.locks import LockHeld
from tests.conftest import PROJECT_ROOT

SEAMLINE = str(Path(sys.executable).with_name("seamline"))
# Holds the workspace's retrain lock, as a running retrain does, until its stdin closes.
HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from flows.weekly_retrain import retrain_lock
    from pipelines.locks import exclusive
    with exclusive(retrain_lock(Path(sys.argv[1])), "a weekly retrain of this workspace"):
        print("held", flush=True)
        sys.stdin.read()
    """
)


@pytest.fixture
def running_retrain(tmp_path: Path):
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    shutil.copy(PROJECT_ROOT / "params.yaml", workspace / "params.yaml")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(workspace)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=PROJECT_ROOT,
    )
    assert holder.stdout.readline().strip() == "held"
    yield workspace, holder.pid
    holder.communicate("")


def test_a_second_retrain_names_the_running_one_and_exits_3(running_retrain: tuple[Path, int]) -> None:
    workspace, pid = running_retrain
    env = {**os.environ, "PREFECT_HOME": str(workspace / "prefect-home")}
    result = subprocess.run(
        [SEAMLINE, "retrain", "--profile", "real"], cwd=workspace, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 3, result.stderr
    assert "a weekly retrain of this workspace is already running" in result.stderr
    assert f"pid {pid} " in result.stderr and "since" in result.stderr, result.stderr
    assert not (workspace / "reports").exists()  # refused before any step: nothing written
    assert "profile: demo" in (workspace / "params.yaml").read_text()  # nor the profile changed


def test_the_flow_itself_refuses_while_another_holds_the_workspace(running_retrain: tuple[Path, int]) -> None:
    workspace, pid = running_retrain
    with pytest.raises(LockHeld) as refused:
        weekly_retrain.fn(profile="real", root=str(workspace))  # the body a deployment's run executes
    assert refused.value.holder is not None and refused.value.holder.pid == pid
    assert retrain_lock(workspace.resolve()) == workspace.resolve() / "data" / ".locks" / "retrain.lock"
    assert "profile: demo" in (workspace / "params.yaml").read_text()

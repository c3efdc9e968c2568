"""The shell scripts a user runs: `source scripts/_env.sh` leaves their shell as it was, and
`scripts/ui.sh` stops, with everything it started, on SIGTERM or SIGINT."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psutil
import pytest

from wildchat_dag_tests.deployment import free_port

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"

# -- scripts/_env.sh -------------------------------------------------------------------------------

# The caller's shell, as a user's: no strict mode. Prints its state after sourcing, then runs a
# failing command, which must not end it.
CALLER = """
before="$-"
cd "$ELSEWHERE"
source "$CHECKOUT/scripts/_env.sh"
echo "status=$?"
echo "options-before=$before"
echo "options-after=$-"
echo "pipefail=$(shopt -qo pipefail && echo on || echo off)"
echo "pwd=$PWD"
echo "home=$DAGSTER_HOME"
echo "path=$PATH"
source "$CHECKOUT/scripts/_env.sh"
echo "path-again=$PATH"
echo "unset=$UNSET_VARIABLE."
false
false | true
echo still-alive
"""


def checkout(tmp_path: Path, pip_fails: bool = False) -> Path:
    """A copy of the scripts, pyproject.toml and dagster.yaml, with a stand-in Python for the
    venv: sourcing _env.sh here can never install anything for real (nor reach the network).
    The stand-in records each call."""
    root = tmp_path / "checkout"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(SCRIPTS / "_env.sh", root / "scripts" / "_env.sh")
    shutil.copy(REPO / "dagster.yaml", root / "dagster.yaml")
    (root / "pyproject.toml").write_text('[project]\nname = "stand-in"\n')
    stub = tmp_path / "python-stand-in"
    # `-m venv DIR` makes DIR/bin/python (this same script); `-m pip` fails when told to.
    stub.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> "{tmp_path}/python-calls"\n'
        'if [ "$1 $2" = "-m venv" ]; then mkdir -p "$3/bin" && cp "$0" "$3/bin/python"; fi\n'
        f'if [ "$1 $2" = "-m pip" ] && [ "{int(pip_fails)}" = 1 ]; then exit 3; fi\n'
        "exit 0\n"
    )
    stub.chmod(0o755)
    return root


def source_env(tmp_path: Path, root: Path) -> tuple[subprocess.CompletedProcess, dict[str, str]]:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    env = {
        k: v for k, v in os.environ.items() if k not in ("WILDCHAT_HOME", "DAGSTER_HOME", "PYTHON")
    }
    env.update(
        CHECKOUT=str(root), ELSEWHERE=str(elsewhere), PYTHON=str(tmp_path / "python-stand-in")
    )
    result = subprocess.run(
        ["bash", "-c", CALLER], env=env, capture_output=True, text=True, timeout=60
    )
    said = dict(re.findall(r"^([a-z-]+)=(.*)$", result.stdout, re.M))
    return result, said


def python_calls(tmp_path: Path) -> list[str]:
    calls = tmp_path / "python-calls"
    return calls.read_text().splitlines() if calls.exists() else []


def test_sourcing_env_sh_leaves_the_callers_shell_as_it_was(tmp_path):
    root = checkout(tmp_path)
    result, said = source_env(tmp_path, root)
    assert result.returncode == 0, result.stderr
    assert said["status"] == "0", result.stderr
    # No errexit, nounset or pipefail leaked into the caller, and it stayed where it was.
    assert said["options-after"] == said["options-before"]
    assert not set("eu") & set(said["options-after"])
    assert said["pipefail"] == "off"
    assert said["pwd"] == str(tmp_path / "elsewhere")
    assert result.stdout.rstrip().endswith("still-alive")
    # What it is for: the venv first on PATH (once, however often sourced) and the Dagster home.
    venv_bin = str(root / ".venv" / "bin")
    assert said["path"].split(":")[0] == venv_bin
    assert said["path-again"] == said["path"]
    assert said["home"] == str(root / ".wildchat" / "dagster_home")
    assert (root / ".wildchat" / "dagster_home" / "dagster.yaml").is_file()
    # The first time it made the venv and installed the project; the stamp of this
    # pyproject.toml then says it is done, so a second sourcing installed nothing more.
    digest = hashlib.sha256((root / "pyproject.toml").read_bytes()).hexdigest()[:16]
    assert (root / ".venv" / f".installed-{digest}").is_file()
    calls = python_calls(tmp_path)
    assert calls[0] == f"-m venv {root / '.venv'}"
    assert [c for c in calls if c.startswith("-m pip install")] == [
        "-m pip install --quiet --upgrade pip",
        f"-m pip install --quiet -e {root}[dev]",
    ]


def test_a_failed_install_returns_an_error_to_the_caller_without_closing_its_shell(tmp_path):
    root = checkout(tmp_path, pip_fails=True)
    result, said = source_env(tmp_path, root)
    assert said["status"] == "1"
    assert "setting up" in result.stderr and ".venv" in result.stderr
    assert said["options-after"] == said["options-before"]
    assert said["pwd"] == str(tmp_path / "elsewhere")
    assert result.stdout.rstrip().endswith("still-alive")
    assert not list((root / ".venv").glob(".installed-*")), "a failed install was stamped"


@pytest.mark.parametrize(
    "script", ["demo.sh", "ui.sh", "test.sh", "redaction-refresh.sh", "fault-soak.sh"]
)
def test_each_script_sets_its_own_strict_mode_before_sourcing_env_sh(script):
    # _env.sh no longer turns strict mode on for them (it must not for an interactive caller).
    lines = (SCRIPTS / script).read_text().splitlines()
    code = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    strict = code.index("set -euo pipefail")
    sourced = next(i for i, line in enumerate(code) if "_env.sh" in line)
    assert strict < sourced


# -- scripts/ui.sh ---------------------------------------------------------------------------------


def stamp_present() -> None:
    """ui.sh sources the checkout's _env.sh, which installs the project when pyproject.toml has
    no stamp in .venv: that needs the network, which no test may. scripts/test.sh (CI) has
    installed it before the tests start."""
    digest = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()[:16]
    if not (REPO / ".venv" / f".installed-{digest}").is_file():
        pytest.fail(
            "the venv is not installed for this pyproject.toml: run `bash scripts/test.sh`, or "
            "source scripts/_env.sh, once"
        )


def ours(home: Path) -> list[psutil.Process]:
    """Every process running with this test's Dagster home, wherever it was reparented to."""
    found = []
    for process in psutil.process_iter():
        with suppress(psutil.Error):
            if process.environ().get("DAGSTER_HOME") == str(home):
                found.append(process)
    return found


@contextmanager
def ui_started(
    tmp_path: Path,
    in_background: bool,
    port: int | None = None,
    extra_env: dict[str, str] | None = None,
) -> Iterator[tuple[subprocess.Popen, Path]]:
    """scripts/ui.sh on ``port`` (default: a free one), with its own homes (WILDCHAT_HOME is
    ``tmp_path / "wildchat"``) and ``extra_env``; yields it (or the shell that started it in the
    background) and its DAGSTER_HOME once the webserver answers. Whatever is left at the end is
    killed, each process by its pid."""
    stamp_present()
    port = port or free_port()
    home = tmp_path / "dagster_home"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WILDCHAT_", "OPENAI_")) and k != "DAGSTER_HOME"
    }
    env.update(WILDCHAT_HOME=str(tmp_path / "wildchat"), DAGSTER_HOME=str(home))
    env.update(extra_env or {})
    command = ["bash", "scripts/ui.sh", "--port", str(port)]
    if in_background:
        # As a script or `bash -c` starts it with `&`: without job control, so with SIGINT
        # ignored from the start.
        command = ["bash", "-c", 'bash scripts/ui.sh "$@" &\nwait', "ui", "--port", str(port)]
    log = (tmp_path / "ui.log").open("w")
    started = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5):
                    break
            except OSError:
                assert started.poll() is None, (tmp_path / "ui.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "the webserver did not answer in 240 s"
                time.sleep(1)
        yield started, home
    finally:
        left = ours(home)
        with suppress(psutil.Error):
            left += psutil.Process(started.pid).children(recursive=True)
        for process in left:
            with suppress(psutil.Error):
                process.kill()
        started.kill()
        started.wait(timeout=30)
        log.close()


def assert_all_stop(started: subprocess.Popen, home: Path, tree: list[psutil.Process]) -> None:
    names = {p.pid: " ".join(p.cmdline()[:4]) for p in tree}
    _, alive = psutil.wait_procs(tree, timeout=120)
    assert not alive, f"still running 120 s after the signal: {[names[p.pid] for p in alive]}"
    started.wait(timeout=30)
    # A code server that the daemon or the webserver started while the signal was on its way
    # was not in the tree: it has no parent left to stop it, and stops when its heartbeat goes
    # unanswered (45 s). Nothing may outlive that.
    left = ours(home)
    _, alive = psutil.wait_procs(left, timeout=120)
    still = [names.get(p.pid) or " ".join(p.cmdline()[:4]) for p in alive if p.is_running()]
    assert not still, f"left behind: {still}"


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_the_ui_started_in_the_background_stops_on_a_signal_to_its_pid(tmp_path, signum):
    """`bash scripts/ui.sh &`, then `kill <pid>` (or `kill -INT <pid>`): the webserver, the
    daemon and the code servers all exit."""
    with ui_started(tmp_path, in_background=True) as (shell, home):
        [ui] = psutil.Process(shell.pid).children()
        tree = [ui, *ui.children(recursive=True)]
        commands = " ".join(" ".join(p.cmdline()) for p in tree)
        # The processes it stands for: the signal has all of these to stop.
        for part in ("dg dev", "dagster_webserver", "dagster._daemon", "api grpc"):
            assert part in commands, f"no {part} among {commands[:2000]}"
        os.kill(ui.pid, signum)
        assert_all_stop(shell, home, tree)


@pytest.mark.slow
def test_the_ui_stops_when_its_process_group_gets_sigterm(tmp_path):
    """`kill %1` from an interactive shell: every process of the job gets SIGTERM at once."""
    with ui_started(tmp_path, in_background=False) as (ui, home):
        tree = [psutil.Process(ui.pid), *psutil.Process(ui.pid).children(recursive=True)]
        assert len(tree) >= 4, [p.cmdline()[:4] for p in tree]
        os.killpg(ui.pid, signal.SIGTERM)
        assert_all_stop(ui, home, tree)
        assert ui.returncode is not None

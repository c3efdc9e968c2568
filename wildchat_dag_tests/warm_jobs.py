"""A small job for the warm run launcher's tests (test_warm_runs.py), run in its workers.

``probe`` has one op that records the pid of the process it runs in, then, as its config asks,
says it started, kills its own process, or waits for a barrier file. Every file is written
whole (a temporary file renamed into place), so the test never reads half of one.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from dagster import Field, in_process_executor, job, op

# How long the op waits for its barrier before it fails the run (a test that forgot to open it
# gets a failed run, not a worker stuck for the rest of the session).
BARRIER_TIMEOUT_S = 300.0


def write_whole(path: str, text: str) -> None:
    partial = Path(f"{path}.partial")
    partial.write_text(text)
    partial.rename(path)


@op(
    config_schema={
        "pid_file": Field(str, description="Where to write os.getpid()."),
        "started_file": Field(str, default_value="", description="Written once the op runs."),
        "barrier": Field(str, default_value="", description="A file to wait for, if set."),
        "die": Field(bool, default_value=False, description="SIGKILL the op's own process."),
    }
)
def record_pid(context) -> None:
    config = context.op_config
    write_whole(config["pid_file"], str(os.getpid()))
    if config["started_file"]:
        write_whole(config["started_file"], "started")
    if config["die"]:
        os.kill(os.getpid(), signal.SIGKILL)
    if config["barrier"]:
        deadline = time.monotonic() + BARRIER_TIMEOUT_S
        while not os.path.exists(config["barrier"]):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the barrier {config['barrier']} never appeared")
            time.sleep(0.02)


# The project's jobs run their steps in the run's own process, as this one does: the pid the op
# records is the warm worker's.
@job(executor_def=in_process_executor)
def probe() -> None:
    record_pid()

"""The nightly job's steps on Celery workers: wildchat_nightly_celery.

The job orchestrates in the run's own process and sends each step to a Celery queue; a worker
(`dagster-celery worker start -A dagster_celery.app -y deploy/celery.yaml`) takes it, loads the
job from its module pointer (wildchat_dag.definitions), runs the step and writes the step's
events to the Dagster instance named by the run. Workers and job must agree on the broker, the
result backend and the queue, so the three come from the same environment variables on both
sides (deploy/celery.yaml reads the first two; a worker's queue is its `-q`):

- ``WILDCHAT_CELERY_BROKER`` (default ``redis://127.0.0.1:6379/0``; RabbitMQ works too:
  ``pyamqp://guest:guest@127.0.0.1:5672//``),
- ``WILDCHAT_CELERY_BACKEND`` (default: the broker when it is Redis, else ``rpc://``),
- ``WILDCHAT_CELERY_QUEUE`` (default ``dagster``, the queue dagster-celery workers listen on):
  the queue of every step, so a run can be pinned to the workers started with ``-q <queue>``.

The values are defaults of the executor's config, so every launch (launchpad, CLI, sensor,
backfill, execute_job) gets them and the launchpad can still change them. A variable set when the
code location loads is referenced as ``{"env": VAR}``, resolved by the run's process when it
starts: a broker password stays out of the stored run config and out of the UI.
"""

from __future__ import annotations

import os
from typing import Any

from dagster import (
    ExecutorDefinition,
    Field,
    Noneable,
    Permissive,
    StringSource,
    define_asset_job,
    multiple_process_executor_requirements,
)
from dagster_celery import celery_executor
from dagster_celery.executor import CELERY_CONFIG

from wildchat_dag.defs.automation.jobs import wildchat_nightly_job
from wildchat_dag.partitions import collection_days

BROKER_ENV_VAR = "WILDCHAT_CELERY_BROKER"
BACKEND_ENV_VAR = "WILDCHAT_CELERY_BACKEND"
QUEUE_ENV_VAR = "WILDCHAT_CELERY_QUEUE"

DEFAULT_BROKER = "redis://127.0.0.1:6379/0"
# dagster-celery's own queue: what `dagster-celery worker start` consumes without -q.
DEFAULT_QUEUE = "dagster"


def _env_reference_or(name: str, default: str) -> str | dict[str, str]:
    # Only a set variable is referenced: Dagster refuses a run whose {"env": ...} is unset.
    return {"env": name} if os.environ.get(name) else default


def default_backend() -> str | dict[str, str]:
    """WILDCHAT_CELERY_BACKEND; unset, a Redis broker also stores the results (referenced by
    its variable, as the broker is) and any other broker gets dagster-celery's ``rpc://``, which
    replies over an AMQP broker and needs no second service."""
    if os.environ.get(BACKEND_ENV_VAR):
        return {"env": BACKEND_ENV_VAR}
    broker = os.environ.get(BROKER_ENV_VAR) or DEFAULT_BROKER
    if broker.startswith(("redis://", "rediss://")):
        return _env_reference_or(BROKER_ENV_VAR, DEFAULT_BROKER)
    return "rpc://"


def _field(default: Any, description: str, config: Any = None) -> Field:
    return Field(
        config or Noneable(StringSource),
        is_required=False,
        default_value=default,
        description=description,
    )


def celery_executor_with_env_defaults() -> ExecutorDefinition:
    """dagster-celery's executor with this project's defaults in its config schema.

    dagster_celery's schema defaults to its own broker (RabbitMQ on localhost) and ``rpc://``.
    Defaults in a job's ``config`` dict do not help: for a partitioned job Dagster turns that
    dict into a PartitionedConfig, which a run launched with only a partition tag (execute_job,
    `dagster job execute`) never reads, and such a run would quietly send its steps to another
    broker. Defaults in the schema are applied whatever launches the run.
    """
    queue = os.environ.get(QUEUE_ENV_VAR) or DEFAULT_QUEUE
    schema = {
        **CELERY_CONFIG,
        "broker": _field(
            _env_reference_or(BROKER_ENV_VAR, DEFAULT_BROKER),
            f"The Celery broker; default {BROKER_ENV_VAR} or {DEFAULT_BROKER}.",
        ),
        "backend": _field(
            default_backend(),
            f"The Celery result backend; default {BACKEND_ENV_VAR}, else the broker when it "
            "is Redis, else rpc://.",
        ),
        # The executor sends a step without a dagster-celery/queue tag to the app's default
        # queue: this is the queue of every step of this project (no asset sets the tag).
        "config_source": _field(
            {"task_default_queue": queue},
            f"Settings of the Celery app; task_default_queue is the queue of every step "
            f"(default {QUEUE_ENV_VAR} or {DEFAULT_QUEUE}).",
            Noneable(Permissive()),
        ),
    }
    return ExecutorDefinition(
        name=celery_executor.name,
        config_schema=schema,
        requirements=multiple_process_executor_requirements(),
        executor_creation_fn=celery_executor.executor_creation_fn,
        description=celery_executor.description,
    )


celery_daily_job = define_asset_job(
    "wildchat_nightly_celery",
    selection=wildchat_nightly_job.selection,
    partitions_def=collection_days,
    executor_def=celery_executor_with_env_defaults(),
    description=(
        "wildchat_nightly, each step executed by a Celery worker (dagster-celery). The workers "
        "share this job's broker, backend and queue (WILDCHAT_CELERY_BROKER / _BACKEND / "
        "_QUEUE, deploy/celery.yaml), its Dagster instance (DAGSTER_HOME) and its DuckDB file."
    ),
)

"""Where a run's steps execute: in the run's own process (default) or on Celery workers.

Chosen once, when the definitions load, by ``MOOCASSETS_EXECUTOR`` (``moocassets.settings``):

* ``in_process`` -- every step of a run in the run's process (``make demo``, the tests, the
  docker-compose stack's run containers).
* ``celery`` -- dagster-celery's executor: the run's process submits each step as a Celery task
  to RabbitMQ (``MOOCASSETS_CELERY_BROKER_URL``) and workers on any number of hosts run them
  (``dagster-celery worker start``, ``deploy/celery/``). Steps tagged with
  ``dagster-celery/queue`` go to that queue: the H5P extracts to :data:`H5P_QUEUE`, so the
  workers listening on it bound the load on the H5P server across the deployment.

The same code location serves both; nothing a step hands to the next travels through process
memory (warehouse tables and the ``pipeline_objects`` table carry it, see ``moocassets.io``).

The Celery executor is dagster-celery's own, with one addition: before it submits the first step
it connects to the broker, so an unreachable broker fails the run at once with an error naming
the broker (password masked) and nothing is written, instead of a connection error from deep
inside the first submission.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg

from moocassets import settings

CELERY_QUEUE_TAG = "dagster-celery/queue"  # dagster_celery.tags.DAGSTER_CELERY_QUEUE_TAG
DEFAULT_QUEUE = "dagster"  # dagster-celery's default queue
H5P_QUEUE = "h5p_api"  # the H5P extracts (the same name as their Dagster pool)
BROKER_CONNECT_TIMEOUT_S = 10.0

CELERY_SETTINGS: Mapping[str, Any] = {
    # A step's task is acknowledged when it ends, not when a worker takes it: if the worker (or
    # its host) dies mid-step, RabbitMQ hands the task to another worker, which runs the step
    # again (every write replaces a whole partition, so a step may safely run twice).
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    # One step at a time per worker process: nothing waits behind a long step on a busy worker.
    "worker_prefetch_multiplier": 1,
    "broker_connection_retry_on_startup": True,
}
"""Celery settings of the executor (the run's side) AND the workers (``deploy/celery/
worker.yaml``, whose ``config_source`` must be the same; a test compares them)."""


def h5p_queue_tags() -> dict[str, str]:
    """Op tags of the H5P extracts: their Celery queue (ignored by the in-process executor)."""
    return {CELERY_QUEUE_TAG: H5P_QUEUE}


class BrokerUnreachableError(ConnectionError):
    """The Celery broker did not accept a connection when a run started."""


def check_broker(url: str, timeout_s: float = BROKER_CONNECT_TIMEOUT_S) -> None:
    """Connect to the broker at ``url`` once; raise :class:`BrokerUnreachableError` naming it
    (password masked) when that fails."""
    from kombu import Connection

    conn = Connection(url, connect_timeout=timeout_s)
    try:
        conn.connect()
    except Exception as exc:  # noqa: BLE001 - socket, AMQP and auth errors alike
        raise BrokerUnreachableError(
            f"Celery broker {conn.as_uri()} is unreachable ({type(exc).__name__}: {exc}); no "
            f"step was submitted and nothing was written. Start the broker or correct "
            f"{settings.CELERY_BROKER_URL}."
        ) from None
    finally:
        conn.release()


def _broker_checked_celery_executor() -> dg.ExecutorDefinition:
    from celery.exceptions import DuplicateTaskNameWarning
    from dagster_celery import celery_executor
    from dagster_celery.executor import CeleryExecutor

    class BrokerCheckedCeleryExecutor(CeleryExecutor):
        """dagster-celery's executor, checking the broker before the first submission."""

        def execute(self, plan_context: Any, execution_plan: Any) -> Iterator[Any]:
            check_broker(self.broker)
            # dagster-celery registers its own step task again for every submission; Celery
            # warns that the (identical) second registration is ignored. Nothing to act on.
            warnings.filterwarnings(
                "ignore", message="Task name 'execute_plan' is already registered",
                category=DuplicateTaskNameWarning,
            )
            yield from super().execute(plan_context, execution_plan)

    @dg.executor(
        name="celery",
        config_schema=celery_executor.config_schema,
        requirements=dg.multiple_process_executor_requirements(),
    )
    def broker_checked_celery_executor(init_context: dg.InitExecutorContext) -> dg.Executor:
        stock = celery_executor.executor_creation_fn(init_context)
        return BrokerCheckedCeleryExecutor(
            retries=stock.retries, broker=stock.broker, backend=stock.backend,
            include=stock.include, config_source=dict(vars(stock.config_source)),
        )

    return broker_checked_celery_executor


def _env_or(name: str, default: str) -> str | dict[str, str]:
    """``{"env": name}`` (resolved by Dagster at launch, never shown) when set, else the default."""
    return {"env": name} if os.environ.get(name) else default


def build_executor(name: str) -> dg.ExecutorDefinition:
    """The executor of every job of the code location (``settings.executor_name()``)."""
    if name == settings.IN_PROCESS:
        # One process per run: no per-step process start-up, one HTTP client per system per
        # run. The H5P fan-out is concurrent inside each step.
        return dg.in_process_executor
    return _broker_checked_celery_executor().configured(
        {
            "broker": _env_or(settings.CELERY_BROKER_URL, settings.DEFAULT_CELERY_BROKER_URL),
            "backend": _env_or(settings.CELERY_BACKEND_URL, settings.DEFAULT_CELERY_BACKEND_URL),
            "config_source": dict(CELERY_SETTINGS),
        },
        name="celery",
    )

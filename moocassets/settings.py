"""How the deployment is configured: environment variable names and the resources built from them.

Values are passed to resources (and to the Celery executor) as ``dg.EnvVar`` so Dagster resolves
them at launch and hides them in the UI. Only the *presence* of optional variables (and the
executor's name) is read here, at definition load, to choose between alternatives (session cookie
vs login; MySQL vs the embedded SQLite demo database; in-process vs Celery steps).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import dagster as dg

DATABASE_URL = "MOOCASSETS_DATABASE_URL"
MOOC_API_URL = "MOOCASSETS_MOOC_API_URL"
H5P_API_URL = "MOOCASSETS_H5P_API_URL"
MOOC_SESSIONID = "MOOCASSETS_MOOC_SESSIONID"
MOOC_EMAIL = "MOOCASSETS_MOOC_EMAIL"
MOOC_PASSWORD = "MOOCASSETS_MOOC_PASSWORD"
SQLITE_PATH = "MOOCASSETS_SQLITE_PATH"
EXECUTOR = "MOOCASSETS_EXECUTOR"
CELERY_BROKER_URL = "MOOCASSETS_CELERY_BROKER_URL"
CELERY_BACKEND_URL = "MOOCASSETS_CELERY_BACKEND_URL"

IN_PROCESS = "in_process"
CELERY = "celery"
EXECUTORS = (IN_PROCESS, CELERY)
DEFAULT_CELERY_BROKER_URL = "pyamqp://guest@127.0.0.1:5672//"
DEFAULT_CELERY_BACKEND_URL = "rpc://"

DEFAULT_MOOC_API_URL = "http://127.0.0.1:8765/api/custom/v1"
DEFAULT_H5P_API_URL = "http://127.0.0.1:8765/wp-json/mooc/v1"

log = logging.getLogger("moocassets")


def env_or_none(name: str) -> dg.EnvVar | None:
    """``EnvVar(name)`` when the variable is set, else None (an optional setting left out)."""
    return dg.EnvVar(name) if os.environ.get(name) else None


def env_or_default(name: str, default: str) -> str | dg.EnvVar:
    return dg.EnvVar(name) if os.environ.get(name) else default


def sqlite_fallback_url() -> str:
    path = os.environ.get(SQLITE_PATH) or str(
        Path(os.environ.get("DAGSTER_HOME") or Path.cwd() / ".dagster_home") / "warehouse.sqlite"
    )
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(path).resolve()}"


def database_url() -> str | dg.EnvVar:
    if os.environ.get(DATABASE_URL):
        return dg.EnvVar(DATABASE_URL)
    url = sqlite_fallback_url()
    log.warning(
        "%s is not set: the warehouse is the embedded SQLite file %s (demo mode). "
        "Set it to mysql+pymysql://user:password@host:3306/db for MySQL.",
        DATABASE_URL,
        url.removeprefix("sqlite:///"),
    )
    return url


def executor_name() -> str:
    """``MOOCASSETS_EXECUTOR``: ``in_process`` (default: every step of a run in the run's process)
    or ``celery`` (steps on dagster-celery workers; needs a MySQL warehouse every worker reaches,
    ``deploy/celery/``)."""
    name = (os.environ.get(EXECUTOR) or IN_PROCESS).strip().lower().replace("-", "_")
    if name not in EXECUTORS:
        raise ValueError(f"{EXECUTOR}={name!r}: expected one of {', '.join(EXECUTORS)}")
    if name == CELERY and not os.environ.get(DATABASE_URL):
        raise ValueError(
            f"{EXECUTOR}=celery needs {DATABASE_URL} (a MySQL warehouse that every worker "
            "reaches); the embedded SQLite demo file exists on one host only"
        )
    return name

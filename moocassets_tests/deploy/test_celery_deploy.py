"""The Celery variant without a broker: executor choice, queues, configuration files agree.

The end-to-end proof (workers on two hosts) is ``test_celery_hosts.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from dagster._core.instance.ref import InstanceRef

from moocassets import keys, settings
from moocassets.assets.extract import EXTRACT_ASSETS
from moocassets.execution import (
    CELERY_QUEUE_TAG,
    CELERY_SETTINGS,
    DEFAULT_QUEUE,
    H5P_QUEUE,
    BrokerUnreachableError,
    build_executor,
    check_broker,
)
from moocassets.processes import free_port

REPO = Path(__file__).resolve().parents[2]
CELERY_DIR = REPO / "deploy" / "celery"


def _services() -> dict[str, dict[str, Any]]:
    return dict(yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"])


def test_the_executor_is_chosen_once_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(settings.EXECUTOR, raising=False)
    assert settings.executor_name() == "in_process"
    assert build_executor("in_process") is dg.in_process_executor
    monkeypatch.setenv(settings.EXECUTOR, "celery")
    monkeypatch.delenv(settings.DATABASE_URL, raising=False)
    with pytest.raises(ValueError, match=settings.DATABASE_URL):  # SQLite is one host's file
        settings.executor_name()
    monkeypatch.setenv(settings.DATABASE_URL, "mysql+pymysql://u:p@db:3306/warehouse")
    assert settings.executor_name() == "celery"
    assert build_executor("celery").name == "celery"
    monkeypatch.setenv(settings.EXECUTOR, "dask")
    with pytest.raises(ValueError, match="in_process, celery"):
        settings.executor_name()


def test_only_the_h5p_extracts_go_to_the_h5p_queue() -> None:
    for asset in EXTRACT_ASSETS:
        queue = asset.op.tags.get(CELERY_QUEUE_TAG, DEFAULT_QUEUE)
        assert (queue == H5P_QUEUE) == (asset.op.pool == keys.H5P_POOL), (asset.key, queue)
    assert sum(a.op.tags.get(CELERY_QUEUE_TAG) == H5P_QUEUE for a in EXTRACT_ASSETS) == 3


def test_worker_config_is_the_executors_and_passes_dagster_celerys_schema(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dagster_celery.cli import get_validated_config

    monkeypatch.setenv(settings.CELERY_BROKER_URL, "pyamqp://w:pw@rabbitmq:5672//")
    config = get_validated_config(str(CELERY_DIR / "worker.yaml"))
    assert config["broker"] == "pyamqp://w:pw@rabbitmq:5672//"  # from the worker's environment
    assert config["backend"] == settings.DEFAULT_CELERY_BACKEND_URL
    assert config["config_source"] == dict(CELERY_SETTINGS)  # same settings on both sides
    raw = yaml.safe_load((CELERY_DIR / "worker.yaml").read_text())["execution"]["config"]
    assert raw["broker"] == {"env": settings.CELERY_BROKER_URL}  # no secret in the file


def test_celery_instance_config_loads_with_storage_from_env_and_no_local_log_capture(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "dagster.yaml").write_text((CELERY_DIR / "dagster.yaml").read_text())
    monkeypatch.setenv("DAGSTER_MYSQL_URL", "mysql+mysqlconnector://d:pw@mysql:3306/dagster")
    ref = InstanceRef.from_dir(str(tmp_path))
    # the workers get this ref with every step: storage must stay an env reference
    assert "DAGSTER_MYSQL_URL" in ref.run_storage_data.config_yaml
    assert "pw@" not in ref.run_storage_data.config_yaml
    assert ref.compute_logs_data.class_name == "NoOpComputeLogManager"
    assert ref.run_launcher_data is not None
    assert ref.run_launcher_data.class_name == "DefaultRunLauncher"


def test_compose_profile_starts_rabbitmq_and_one_worker_per_queue() -> None:
    services = _services()
    celery = {n: s for n, s in services.items() if s.get("profiles") == ["celery"]}
    assert set(celery) == {"rabbitmq", "celery-worker", "celery-worker-h5p"}
    queues = {}
    for name in ("celery-worker", "celery-worker-h5p"):
        cmd = " ".join(celery[name]["command"])
        assert "dagster-celery worker start -A dagster_celery.app" in cmd
        assert "-y /opt/dagster/celery/worker.yaml" in cmd
        queues[name] = cmd.split(" -q ")[1].split()[0]
        env = celery[name]["environment"]
        assert env["MOOCASSETS_EXECUTOR"] == "celery" and "@rabbitmq:5672" in env[
            "MOOCASSETS_CELERY_BROKER_URL"]
        mounts = {v.split(":")[0]: v.split(":")[1] for v in celery[name]["volumes"]}
        assert mounts["./deploy/celery/worker.yaml"] == "/opt/dagster/celery/worker.yaml"
        assert mounts["./deploy/celery/dagster.yaml"] == "/opt/dagster/dagster_home/dagster.yaml"
    assert queues == {"celery-worker": DEFAULT_QUEUE, "celery-worker-h5p": H5P_QUEUE}


def test_override_switches_every_dagster_service_to_the_celery_instance() -> None:
    override = yaml.safe_load((CELERY_DIR / "compose.yaml").read_text())["services"]
    services = _services()
    assert set(override) == {"dagster-init", "code-server", "webserver", "daemon"}
    for name, svc in override.items():
        assert name in services  # overrides existing services only
        assert svc["environment"]["MOOCASSETS_EXECUTOR"] == "celery"
        assert svc["volumes"] == ["./deploy/celery/dagster.yaml:"
                                  "/opt/dagster/dagster_home/dagster.yaml:ro"]


def test_an_unreachable_broker_is_named_with_its_password_masked() -> None:
    port = free_port()
    with pytest.raises(BrokerUnreachableError) as err:
        check_broker(f"pyamqp://guest:hunter2@127.0.0.1:{port}//", timeout_s=2)
    assert f"amqp://guest:**@127.0.0.1:{port}//" in str(err.value)
    assert "hunter2" not in str(err.value)

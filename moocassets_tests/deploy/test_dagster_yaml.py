"""deploy/dagster.yaml (compose) and deploy/local-mariadb/dagster.yaml, loaded by Dagster itself.

`InstanceRef.from_dir` runs Dagster's instance config schema (the same code path as
`DagsterInstance.get()`), then the run coordinator and run launcher are rehydrated from their
config exactly as the daemon would do it. Storage is not connected to (no MySQL needed), but its
config is processed with env vars resolved.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster import DefaultRunLauncher, QueuedRunCoordinator
from dagster._config import process_config
from dagster._core.instance.config import (
    ConcurrencyConfig,
    PoolGranularity,
    dagster_instance_config,
)
from dagster._core.instance.ref import InstanceRef
from dagster._core.launcher import RunLauncher
from dagster._core.run_coordinator import RunCoordinator
from dagster_docker import DockerRunLauncher
from dagster_mysql import DagsterMySQLStorage
from dagster_mysql.utils import mysql_url_from_config

REPO = Path(__file__).resolve().parents[2]
PROD = REPO / "deploy" / "dagster.yaml"
LOCAL = REPO / "deploy" / "local-mariadb" / "dagster.yaml"
K8S_VALUES = REPO / "deploy" / "k8s" / "values.yaml"

DUMMY_ENV = {
    "DAGSTER_MYSQL_HOST": "mysql",
    "DAGSTER_MYSQL_PORT": "3306",
    "DAGSTER_MYSQL_DB": "dagster_storage",
    "DAGSTER_MYSQL_USER": "dagster",
    "DAGSTER_MYSQL_PASSWORD": "p@ss word",
    "DAGSTER_MYSQL_URL": "mysql+mysqlconnector://root@127.0.0.1:3306/dagster_test",
}
POOLS = ("mooc_api", "h5p_api", "warehouse_write")


@pytest.fixture
def dummy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in DUMMY_ENV.items():
        monkeypatch.setenv(key, value)


def _ref(source: Path, tmp_path: Path) -> InstanceRef:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(source, home / "dagster.yaml")
    return InstanceRef.from_dir(str(home))


def _storage_config(ref: InstanceRef) -> dict[str, Any]:
    data = ref.storage_data
    assert data is not None
    assert (data.module_name, data.class_name) == ("dagster_mysql", "DagsterMySQLStorage")
    result = process_config(DagsterMySQLStorage.config_type(), yaml.safe_load(data.config_yaml))
    assert result.success, result.errors
    return dict(result.value)  # type: ignore[arg-type]


def test_production_yaml_passes_dagster_schema(dummy_env: None, tmp_path: Path) -> None:
    config, custom_class = dagster_instance_config(str(PROD.parent), "dagster.yaml")
    assert custom_class is None
    assert set(config) >= {"storage", "run_coordinator", "run_launcher", "concurrency"}


def test_production_storage_is_mysql_from_env(dummy_env: None, tmp_path: Path) -> None:
    ref = _ref(PROD, tmp_path)
    storage = _storage_config(ref)
    url = mysql_url_from_config(storage)  # type: ignore[arg-type]
    # env resolved, password URL-quoted, mysql-connector driver, separate Dagster database
    assert url == "mysql+mysqlconnector://dagster:p%40ss+word@mysql:3306/dagster_storage"
    raw = PROD.read_text()
    assert "p@ss" not in raw and "password: {env: DAGSTER_MYSQL_PASSWORD}" in raw


def test_production_queued_coordinator_and_docker_launcher(dummy_env: None, tmp_path: Path) -> None:
    ref = _ref(PROD, tmp_path)
    coordinator = ref.run_coordinator_data.rehydrate(as_type=RunCoordinator)
    assert isinstance(coordinator, QueuedRunCoordinator)
    launcher = ref.run_launcher_data.rehydrate(as_type=RunLauncher)  # type: ignore[union-attr]
    assert isinstance(launcher, DockerRunLauncher)
    assert launcher.networks == ["moocassets_network"]
    assert {"DAGSTER_MYSQL_PASSWORD", "MOOCASSETS_DATABASE_URL"} <= set(launcher.env_vars)
    assert launcher.supports_check_run_worker_health


def test_production_run_limits_backfill_tag_limit_and_pools(
    dummy_env: None, tmp_path: Path
) -> None:
    ref = _ref(PROD, tmp_path)
    concurrency = ref.settings["concurrency"]
    runs = concurrency["runs"]
    assert 1 <= runs["max_concurrent_runs"] <= 32
    limits = {lim["key"]: lim for lim in runs["tag_concurrency_limits"]}
    backfill = limits["dagster/backfill"]
    assert "value" not in backfill, "the backfill limit must cover all backfills together"
    assert 1 <= backfill["limit"] < runs["max_concurrent_runs"], "backfills must leave room"
    per_course = limits["dagster/partition"]
    assert per_course["value"] == {"applyLimitPerUniqueValue": True}
    assert per_course["limit"] == 1
    pools = concurrency["pools"]
    assert pools["granularity"] == "op"
    assert pools["default_limit"] >= 1
    # what the daemon's run queue will enforce: `concurrency:` merged over the coordinator
    coordinator = ref.run_coordinator_data.rehydrate(as_type=QueuedRunCoordinator)
    merged = ConcurrencyConfig.from_concurrency_settings(
        concurrency, coordinator.get_run_queue_config()
    )
    queue = merged.run_queue_config
    assert queue is not None
    assert queue.max_concurrent_runs == runs["max_concurrent_runs"]
    assert queue.tag_concurrency_limits == runs["tag_concurrency_limits"]
    assert queue.max_user_code_failure_retries >= 1
    assert merged.pool_config.pool_granularity == PoolGranularity.OP
    assert merged.pool_config.default_pool_limit == pools["default_limit"]


def test_pool_limits_are_set_for_every_source_pool() -> None:
    """dagster.yaml has no per-pool setting; the compose init service sets each pool."""
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    init = " ".join(compose["services"]["dagster-init"]["command"])
    assert init.startswith("sh -c dagster instance migrate")
    for pool in POOLS:
        assert f"dagster instance concurrency set {pool} " in init
    for pool in POOLS:
        assert pool in PROD.read_text()


def test_production_telemetry_off_and_monitoring_on(dummy_env: None, tmp_path: Path) -> None:
    ref = _ref(PROD, tmp_path)
    assert ref.settings["telemetry"] == {"enabled": False}
    assert ref.settings["run_monitoring"]["enabled"] is True
    assert ref.settings["run_retries"]["enabled"] is True


def test_dagster_rejects_a_broken_production_yaml(dummy_env: None, tmp_path: Path) -> None:
    """Guard that the checks above are not vacuous: the same loader rejects a typo."""
    from dagster._core.errors import DagsterInvalidConfigError

    home = tmp_path / "broken"
    home.mkdir()
    broken = yaml.safe_load(PROD.read_text())
    broken["concurrency"]["runs"]["max_concurent_runs"] = 3
    (home / "dagster.yaml").write_text(yaml.safe_dump(broken))
    with pytest.raises(DagsterInvalidConfigError):
        InstanceRef.from_dir(str(home))


def test_local_mariadb_template_matches_production_except_launcher(
    dummy_env: None, tmp_path: Path
) -> None:
    ref = _ref(LOCAL, tmp_path)
    storage = _storage_config(ref)
    assert storage["mysql_url"] == DUMMY_ENV["DAGSTER_MYSQL_URL"]
    assert isinstance(ref.run_coordinator_data.rehydrate(), QueuedRunCoordinator)
    assert isinstance(ref.run_launcher_data.rehydrate(), DefaultRunLauncher)  # type: ignore[union-attr]
    assert ref.settings["telemetry"] == {"enabled": False}
    prod = yaml.safe_load(PROD.read_text())["concurrency"]
    local = ref.settings["concurrency"]
    assert {lim["key"] for lim in local["runs"]["tag_concurrency_limits"]} == {
        lim["key"] for lim in prod["runs"]["tag_concurrency_limits"]
    }
    assert local["pools"]["granularity"] == prod["pools"]["granularity"]


def _camel_to_snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name)


def test_k8s_values_use_k8s_launcher_external_storage_and_valid_concurrency(
    tmp_path: Path,
) -> None:
    values = yaml.safe_load(K8S_VALUES.read_text())
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["postgresql"]["enabled"] is False
    assert values["postgresql"]["postgresqlHost"]
    assert values["generatePostgresqlPasswordSecret"] is False
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["name"] == "moocassets"
    assert deployment["codeServerArgs"] == ["-m", "moocassets.definitions"]
    assert deployment["image"]["tag"] != "latest", "pin a unique tag per release"
    assert values["telemetry"]["enabled"] is False
    # Render `concurrency` the way the chart does (camelCase -> snake_case) and let Dagster
    # validate it as instance config.
    conc = values["concurrency"]
    assert conc["enabled"] is True
    rendered = {
        "concurrency": {
            "pools": {_camel_to_snake(k): v for k, v in conc["pools"].items()},
            "runs": {
                "max_concurrent_runs": conc["runs"]["maxConcurrentRuns"],
                "tag_concurrency_limits": conc["runs"]["tagConcurrencyLimits"],
            },
        },
        "telemetry": {"enabled": values["telemetry"]["enabled"]},
    }
    home = tmp_path / "k8s"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(rendered))
    config, _ = dagster_instance_config(str(home))
    keys = {lim["key"] for lim in config["concurrency"]["runs"]["tag_concurrency_limits"]}
    assert "dagster/backfill" in keys

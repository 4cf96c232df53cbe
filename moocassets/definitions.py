"""The one place where assets (with their checks), resources, IO managers and sensors meet."""

from __future__ import annotations

import dagster as dg

from moocassets import keys, settings
from moocassets.assets import ALL_ASSETS
from moocassets.automation import automation_defs, settings_from_env, with_automation
from moocassets.execution import build_executor
from moocassets.io import ExtractStoreIOManager, ModelStoreIOManager, WarehouseIOManager
from moocassets.sources import H5PApiResource, MoocApiResource


def build_resources() -> dict[str, object]:
    """Resources from the environment (see README "Configuration")."""
    database_url = settings.database_url()
    return {
        keys.MOOC_RESOURCE: MoocApiResource(
            base_url=settings.env_or_default(settings.MOOC_API_URL, settings.DEFAULT_MOOC_API_URL),
            sessionid=settings.env_or_none(settings.MOOC_SESSIONID),
            email=settings.env_or_none(settings.MOOC_EMAIL),
            password=settings.env_or_none(settings.MOOC_PASSWORD),
        ),
        keys.H5P_RESOURCE: H5PApiResource(
            base_url=settings.env_or_default(settings.H5P_API_URL, settings.DEFAULT_H5P_API_URL),
        ),
        keys.WAREHOUSE_IO: WarehouseIOManager(database_url=database_url),
        # extract frames, features and models in the warehouse database: every step reaches
        # them, on whichever host it runs (moocassets/io/objects.py)
        keys.EXTRACT_IO: ExtractStoreIOManager(database_url=database_url),
        keys.MODEL_IO: ModelStoreIOManager(database_url=database_url),
    }


# Every course-partitioned asset (all but the unpartitioned model): the target of CLI backfills,
# e.g. `dagster job backfill -w workspace.yaml -j course_refresh --partitions "K1,K2"`.
course_refresh_job = dg.define_asset_job(
    "course_refresh",
    selection=dg.AssetSelection.all() - dg.AssetSelection.groups(keys.RISK_GROUP),
    description="Refresh every table of the selected course partitions (one run per course).",
)


def build_core_defs() -> dg.Definitions:
    """Assets, resources, executor (a function: one module-level Definitions only)."""
    return dg.Definitions(
        assets=ALL_ASSETS,
        jobs=[course_refresh_job],
        resources=build_resources(),
        # MOOCASSETS_EXECUTOR: in_process (default) or celery (moocassets/execution.py)
        executor=build_executor(settings.executor_name()),
    )

# Sensors, automation sensor; conditions + freshness on the assets (docs/AUTOMATION.md).
_sensor_settings, _automation_settings, _automation_interval = settings_from_env()
defs = with_automation(
    dg.Definitions.merge(
        build_core_defs(),
        automation_defs(
            sensor_settings=_sensor_settings, automation_interval_seconds=_automation_interval
        ),
    ),
    _automation_settings,
)


def course_refresh() -> dg.JobDefinition:
    """``course_refresh`` of ``defs``, at module scope so ``dg.reconstructable`` can point at it:
    a run outside the webserver/daemon on the Celery executor (``moocassets.backfill``) needs a
    job its workers can rebuild."""
    return defs.resolve_job_def(course_refresh_job.name)

"""Automation: course discovery, new-enrollment refreshes, per-course staleness.

Wiring (``moocassets/definitions.py``)::

    defs = with_automation(dg.Definitions.merge(core_defs, automation_defs(...)))

``automation_defs`` adds the sensors and the automation-condition sensor (the asset checks live
on the warehouse assets themselves, ``moocassets/checks.py``);
``with_automation`` puts the automation conditions on the extract and warehouse assets and the
``FreshnessPolicy`` on the warehouse assets (spec mapping, so the asset modules stay unchanged).
See ``docs/AUTOMATION.md``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from datetime import timedelta

import dagster as dg

from moocassets import keys
from moocassets.automation.conditions import (
    AutomationSettings,
    CourseFinal,
    RetryBackoff,
    SettlingPartitions,
    StalePartitions,
    extract_condition,
    risk_model_condition,
    warehouse_condition,
)
from moocassets.automation.sensors import SensorSettings, build_sensors

AUTOMATION_SENSOR_NAME = "moocassets_automation"
EXTRACT_GROUP = keys.EXTRACT_GROUP
WAREHOUSE_GROUP = keys.WAREHOUSE_GROUP
FEATURES_GROUP = keys.FEATURES_GROUP
RISK_GROUP = keys.RISK_GROUP
RISK_MODEL = dg.AssetKey(keys.RISK_MODEL)

# Environment variables read once at definitions load (never inside asset or sensor bodies).
ENV_DISCOVERY_INTERVAL = "MOOCASSETS_DISCOVERY_INTERVAL_SECONDS"
ENV_ENROLLMENTS_INTERVAL = "MOOCASSETS_ENROLLMENTS_INTERVAL_SECONDS"
ENV_AUTOMATION_INTERVAL = "MOOCASSETS_AUTOMATION_INTERVAL_SECONDS"
ENV_STALE_AFTER_HOURS = "MOOCASSETS_STALE_AFTER_HOURS"
ENV_SETTLE_SECONDS = "MOOCASSETS_AUTOMATION_SETTLE_SECONDS"

__all__ = [
    "AUTOMATION_SENSOR_NAME",
    "AutomationSettings",
    "CourseFinal",
    "RetryBackoff",
    "SensorSettings",
    "SettlingPartitions",
    "StalePartitions",
    "automation_defs",
    "automation_sensor",
    "build_sensors",
    "extract_condition",
    "risk_model_condition",
    "settings_from_env",
    "warehouse_condition",
    "with_automation",
]


def settings_from_env(
    env: Mapping[str, str] | None = None,
) -> tuple[SensorSettings, AutomationSettings, int]:
    """Sensor settings, automation settings and the automation-sensor interval from env."""
    e = os.environ if env is None else env

    def num(name: str, default: float) -> float:
        raw = e.get(name, "").strip()
        return float(raw) if raw else default

    sensors = SensorSettings(
        discovery_interval_seconds=int(num(ENV_DISCOVERY_INTERVAL, 300)),
        enrollments_interval_seconds=int(num(ENV_ENROLLMENTS_INTERVAL, 60)),
    )
    automation = AutomationSettings(
        stale_after=timedelta(hours=num(ENV_STALE_AFTER_HOURS, 12)),
        settle=timedelta(seconds=num(ENV_SETTLE_SECONDS, 60)),
    )
    return sensors, automation, int(num(ENV_AUTOMATION_INTERVAL, 30))


def automation_sensor(minimum_interval_seconds: int = 30) -> dg.AutomationConditionSensorDefinition:
    """The sensor evaluating every asset's automation condition, RUNNING by default.

    ``use_user_code_server=True`` because the conditions include custom (Python) conditions,
    which the daemon cannot evaluate from their serialized form. The flag is marked beta in
    Dagster 1.13; its warning is silenced here, narrowly.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"Parameter `use_user_code_server`", category=dg.BetaWarning
        )
        return dg.AutomationConditionSensorDefinition(
            AUTOMATION_SENSOR_NAME,
            target=dg.AssetSelection.groups(
                EXTRACT_GROUP, WAREHOUSE_GROUP, FEATURES_GROUP, RISK_GROUP
            ),
            default_status=dg.DefaultSensorStatus.RUNNING,
            minimum_interval_seconds=minimum_interval_seconds,
            use_user_code_server=True,
            description="Loads new course partitions, refreshes stale running courses, cascades "
            "downstream, retries failures with backoff (docs/AUTOMATION.md).",
        )


def automation_defs(
    *,
    sensor_settings: SensorSettings | None = None,
    automation_interval_seconds: int = 30,
) -> dg.Definitions:
    """The sensors and the automation-condition sensor."""
    return dg.Definitions(
        sensors=[*build_sensors(sensor_settings), automation_sensor(automation_interval_seconds)],
    )


def with_automation(
    defs: dg.Definitions, settings: AutomationSettings | None = None
) -> dg.Definitions:
    """``defs`` with conditions on extract/features/warehouse assets and freshness on the
    warehouse assets."""
    s = settings or AutomationSettings()
    policy = dg.FreshnessPolicy.time_window(fail_window=s.fail_window, warn_window=s.warn_window)
    extract = extract_condition(s)
    # raw_data reads the model but must not re-run every course when it is retrained (a run
    # storm): it picks the new model up at its next refresh; a missing model means fallback.
    warehouse = warehouse_condition(s).ignore(dg.AssetSelection.assets(RISK_MODEL))
    defs = defs.permissive_map_resolved_asset_specs(
        func=lambda spec: spec.replace_attributes(automation_condition=extract),
        selection=dg.AssetSelection.groups(EXTRACT_GROUP),
    )
    defs = defs.permissive_map_resolved_asset_specs(
        func=lambda spec: spec.replace_attributes(automation_condition=risk_model_condition()),
        selection=dg.AssetSelection.groups(RISK_GROUP),  # the model (empty in stand-in graphs)
    )
    defs = defs.permissive_map_resolved_asset_specs(
        func=lambda spec: spec.replace_attributes(automation_condition=warehouse),
        selection=dg.AssetSelection.groups(FEATURES_GROUP),  # computed with the warehouse
    )
    return defs.permissive_map_resolved_asset_specs(
        func=lambda spec: dg.apply_freshness_policy(
            spec.replace_attributes(automation_condition=warehouse), policy
        ),
        selection=dg.AssetSelection.groups(WAREHOUSE_GROUP),
    )

"""Stand-in assets with the real graph's keys, groups, partitions and dependencies (no I/O).

The graph is read from the real asset definitions (``moocassets.assets.ALL_ASSETS``), so these
stand-ins cannot drift from it. Automation tests put the production conditions on them
(through ``with_automation``) and report materializations into an ephemeral instance, so they
run in well under a second.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from moocassets import keys
from moocassets.assets import ALL_ASSETS as REAL_ASSETS


def _real_specs() -> list[dg.AssetSpec]:
    return [spec for asset in REAL_ASSETS for spec in asset.specs]


def _deps(spec: dg.AssetSpec) -> list[str]:
    return [dep.asset_key.to_user_string() for dep in spec.deps]


_SPECS = _real_specs()
ROOT_EXTRACTS = [
    s.key.to_user_string() for s in _SPECS if s.group_name == keys.EXTRACT_GROUP and not s.deps
]
H5P_EXTRACTS = [
    s.key.to_user_string() for s in _SPECS if s.group_name == keys.EXTRACT_GROUP and s.deps
]
EXTRACTS = [*ROOT_EXTRACTS, *H5P_EXTRACTS]
WAREHOUSE_DEPS: dict[str, list[str]] = {
    s.key.to_user_string(): _deps(s)
    for s in _SPECS
    if s.group_name in (keys.WAREHOUSE_GROUP, keys.FEATURES_GROUP)
}
"""Every course-partitioned asset downstream of the extracts, with its dependencies."""
WAREHOUSE_TABLES = [
    s.key.to_user_string() for s in _SPECS if s.group_name == keys.WAREHOUSE_GROUP
]
ALL_ASSETS = [*EXTRACTS, *WAREHOUSE_DEPS]  # every course-partitioned asset
MODEL = keys.RISK_MODEL  # unpartitioned, group risk, trained on raw_data_history


def standin_assets() -> list[dg.AssetsDefinition]:
    return [_standin(spec) for spec in _SPECS]


def _standin(spec: dg.AssetSpec) -> dg.AssetsDefinition:
    return _asset(spec.key.to_user_string(), spec.group_name or "default", _deps(spec),
                  spec.partitions_def)


def _asset(
    name: str, group: str, deps: Sequence[str], partitions_def: dg.PartitionsDefinition | None
) -> dg.AssetsDefinition:
    @dg.asset(name=name, group_name=group, deps=list(deps), partitions_def=partitions_def)
    def _a() -> None:
        return None

    return _a

"""A reconstructable job over the real assets with the multiprocess executor (one process per
step), for tests that prove nothing passes between steps through process memory.

Its resources come from the environment exactly as in ``moocassets.definitions`` (the test sets
the simulator's URLs, credentials and the warehouse URL before launching), so every step process
builds them the same way.
"""

from __future__ import annotations

import dagster as dg

from moocassets import keys
from moocassets.assets import ALL_ASSETS
from moocassets.definitions import build_resources

JOB_NAME = "course_refresh_multiprocess"


def course_refresh_multiprocess() -> dg.JobDefinition:
    defs = dg.Definitions(
        assets=ALL_ASSETS,
        resources=build_resources(),
        jobs=[
            dg.define_asset_job(
                JOB_NAME,
                selection=dg.AssetSelection.all() - dg.AssetSelection.groups(keys.RISK_GROUP),
                executor_def=dg.multiprocess_executor,
            )
        ],
    )
    return defs.resolve_job_def(JOB_NAME)

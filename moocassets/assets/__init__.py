"""Thin asset definitions: wire resources to transforms, nothing else."""

from moocassets.assets.extract import EXTRACT_ASSETS
from moocassets.assets.features import FEATURE_ASSETS
from moocassets.assets.risk import RISK_ASSETS
from moocassets.assets.warehouse import WAREHOUSE_ASSETS

ALL_ASSETS = [*EXTRACT_ASSETS, *WAREHOUSE_ASSETS, *FEATURE_ASSETS, *RISK_ASSETS]
"""Every asset of the project, in lineage order."""

__all__ = ["ALL_ASSETS", "EXTRACT_ASSETS", "FEATURE_ASSETS", "RISK_ASSETS", "WAREHOUSE_ASSETS"]

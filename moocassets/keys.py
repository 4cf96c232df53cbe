"""Names that several modules must agree on, each declared once.

Asset groups, IO manager and resource keys, pools, asset names that other modules refer to, and
the metadata keys one module writes and another reads. A string contract written as a literal in
two places drifts; import it from here instead.
"""

from __future__ import annotations

# -- asset groups (the UI's lineage sections, and the automation's selections) ---------------------
EXTRACT_GROUP = "extract"
"""API extracts: one asset per source endpoint (``moocassets.assets.extract``)."""
WAREHOUSE_GROUP = "warehouse"
"""The ERD tables and ``raw_data``/``raw_data_history`` (``moocassets.assets.warehouse``)."""
FEATURES_GROUP = "features"
"""Per-learner features and label, computed once per course refresh (``assets.features``)."""
RISK_GROUP = "risk"
"""The dropout risk model (``moocassets.assets.risk``)."""

# -- resource and IO manager keys -------------------------------------------------------------
MOOC_RESOURCE = "mooc"
H5P_RESOURCE = "h5p"
EXTRACT_IO = "extract_io_manager"
"""Intermediate frames (extracts, features): one stored frame per asset and course."""
WAREHOUSE_IO = "warehouse_io_manager"
"""The MySQL warehouse: one table per asset, one course partition replaced per transaction."""
MODEL_IO = "model_io_manager"
"""The trained risk model."""

# -- pools (concurrency limits across runs, set in the instance's dagster.yaml) -------------------
MOOC_POOL = "mooc_api"
H5P_POOL = "h5p_api"
WAREHOUSE_POOL = "warehouse_write"

# -- asset names referred to outside their own module -------------------------------------------
COURSE_EXTRACT = "mooc_course_extract"
ENROLLMENTS_EXTRACT = "mooc_enrollments_extract"
ENROLLMENTS = "enrollments"
LEARNER_FEATURES = "learner_features"
RAW_DATA = "raw_data"
RAW_DATA_HISTORY = "raw_data_history"
RISK_MODEL = "dropout_risk_model"

# -- metadata contracts -------------------------------------------------------------------------
COURSE_ENDS_METADATA = "course_ends"
"""Materialization metadata of ``mooc_course_extract``: JSON ``{course_id: ISO end | null}``,
read by the automation conditions (an ended course's data is final)."""
REPLACE_SCOPE_METADATA = "replace_scope"
"""Definition metadata read by the warehouse IO manager: the columns (besides the partition
column) that bound a write's DELETE to the values present in the written frame."""
PARTITION_EXPR_METADATA = "partition_expr"
"""Definition metadata: the column holding the partition key (Dagster's DbIOManager convention)."""

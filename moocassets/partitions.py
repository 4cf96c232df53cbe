"""The ``course_id`` partitions shared by every asset, sensor and check.

Courses appear at run time (the discovery sensor registers them), so the partitions are dynamic.
"""

from __future__ import annotations

import dagster as dg

COURSE_PARTITIONS_NAME = "course_id"

course_partitions = dg.DynamicPartitionsDefinition(name=COURSE_PARTITIONS_NAME)

# Dagster refuses keys with these substrings; commas break UI subset backfills (dagster#15105).
_FORBIDDEN_SUBSTRINGS = ("...", ",", "\n", "\r", "\t", "\x00")
MAX_COURSE_KEY_LENGTH = 255


def invalid_course_key_reason(course_id: object) -> str | None:
    """Why ``course_id`` cannot be a partition key (None when it can)."""
    if not isinstance(course_id, str):
        return f"not a string ({type(course_id).__name__})"
    if not course_id.strip():
        return "empty"
    if course_id != course_id.strip():
        return "leading or trailing whitespace"
    if len(course_id) > MAX_COURSE_KEY_LENGTH:
        return f"longer than {MAX_COURSE_KEY_LENGTH} characters"
    for bad in _FORBIDDEN_SUBSTRINGS:
        if bad in course_id:
            return f"contains {bad!r}"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in course_id):
        return "contains a control character"
    return None

"""Source payloads → warehouse rows, with per-record validation (pure functions, no I/O).

One module per source system, as in :mod:`moocassets.sources`: :mod:`.mooc` (M1, M2, M4-M6) and
:mod:`.h5p` (H1-H4); :mod:`.records` holds what both share (result types, field readers).

Inputs are the decoded JSON records as the sources send them, envelopes already unwrapped by the
clients (spec/source-apis.md): a list of row dicts for M1/M4/M5/M6, and per learner the whole
H1/H2/H3/H4 object (``None`` = the 404 ``no_data`` answer = no rows).

Every parser returns :class:`Parsed`: the rows as a frame that passes its table's
``coerce_frame`` + ``validate_frame``, the records it rejected with a reason, and how many records
it examined (``seen``). A bad record is rejected, never stored and never raises; only records are
rejected, never the whole course (the caller applies the reject-share threshold).

What counts as one record (``seen``):

* M1/M4/M5/M6: one list item (an item that is not an object is one rejected record).
* H1/H2: one item of ``scores`` / ``video_progress``. A learner payload that is unusable as a
  whole (bad learner key, echoed ``user_id`` differing from the key, ``scores`` not a list)
  rejects each of its items with the same reason, or counts as one rejected record when it has no
  item list at all (the key missing or null: a malformed answer, as a MOOC body without its row
  list is; ``[]`` is a learner without rows).
* H3/H4: one learner payload (one with none of its sections is rejected, not stored as NULLs).

Common rules (docs/CONTRACTS.md, "Reject rules"): the learner id is ``user_id`` falling back to
``id``, an integer or a text of ASCII digits, within ``user_id``'s column; every numeric value
must lie within its column's bounds (declared range and SQL type, ``Column.bounds``); a text
column takes text (numbers are written as text; an object, a list or a boolean is rejected);
unknown fields are ignored; missing optional fields are NULL; numbers may come as numeric strings
(H5P); booleans must be JSON booleans, 0/1 or ``"true"``/``"false"``; H1 ``opened``/``finished``
may be JSON booleans (flags, never times); free-text display names (titles, chapter names, full
names) longer than their column are truncated, identifiers (username, email, letter grade) that
are too long reject the record. Duplicates of the key within one payload: the first is kept, the
others are rejected. A reason quotes at most 120 characters of the bad value, with its length.
"""

from moocassets.transforms.payloads.h5p import dashboard_rows, h5p_score_rows, video_rows
from moocassets.transforms.payloads.mooc import (
    COURSE_FRAME_COLUMNS,
    course_frame,
    discussion_rows,
    enrollment_rows,
    grade_rows,
    progress_rows,
)
from moocassets.transforms.payloads.records import Parsed, Reject

__all__ = [
    "COURSE_FRAME_COLUMNS",
    "Parsed",
    "Reject",
    "course_frame",
    "dashboard_rows",
    "discussion_rows",
    "enrollment_rows",
    "grade_rows",
    "h5p_score_rows",
    "progress_rows",
    "video_rows",
]

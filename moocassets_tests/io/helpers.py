"""Frame builders and small helpers for the IO tests."""

from __future__ import annotations

import zlib
from typing import Any

import pandas as pd
import sqlalchemy as sa

from moocassets.schema import table_spec

NASTY_COURSE = "course-v1:O'Reilly+CS:101+2025_T1"
COURSES = ["course-v1:DHQG-HCM+FM101+2025_S2", NASTY_COURSE]


class ListLog:
    """A ``context.log`` stand-in that records messages."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str]] = []

    def info(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.messages.append(("info", msg))

    def warning(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.messages.append(("warning", msg))

    def debug(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.messages.append(("debug", msg))

    def text(self) -> str:
        return "\n".join(m for _, m in self.messages)


def h5p_frame(
    course_id: str, learners: int = 5, contents: int = 3, marker: str = "Thư mục 1"
) -> pd.DataFrame:
    rows = []
    for u in range(1, learners + 1):
        for c in range(contents):
            rows.append(
                {
                    "user_id": u,
                    "course_id": course_id,
                    "content_id": c,
                    "content_title": f"Bài tập {c} - Chương 1: Ôn luyện 🎓",
                    "score": (u + c) % 10,
                    "max_score": 10,
                    "percentage": round(((u + c) % 10) * 10 + 0.25, 2),
                    "opened_at": pd.Timestamp("2025-03-01 08:00:00", tz="UTC")
                    + pd.Timedelta(minutes=u * 10 + c),
                    "finished_at": None if c == 0 else pd.Timestamp("2025-03-02", tz="UTC"),
                    "is_finished": None if c == 0 else bool(u % 2),
                    "time_spent": 12.5 * u,
                    "folder_id": 7,
                    "folder_name": marker,
                    "fetched_at": pd.Timestamp("2025-03-05 12:00:00", tz="UTC"),
                }
            )
    return pd.DataFrame(rows)


def enrollments_frame(course_id: str) -> pd.DataFrame:
    """Rows that exercise every column kind, NULLs and awkward text."""
    base = zlib.crc32(course_id.encode()) % 100_000 * 10
    return pd.DataFrame(
        [
            {
                "course_id": course_id,
                "user_id": 1,
                "username": "nguyễn_văn_a",
                "email": "a@example.vn",
                "full_name": "Nguyễn Văn Ánh 😀👍🏽",
                "enrollment_id": base + 1,
                "mode": "audit",
                "is_active": True,
                "created": pd.Timestamp("2025-01-02 03:04:05", tz="Asia/Ho_Chi_Minh"),
                "all_attributes": {"city": "Hà Nội", "tags": ["x", 1, None], "ok": True},
                "fetched_at": pd.Timestamp("2025-03-05 12:00:00", tz="UTC"),
            },
            {
                "course_id": course_id,
                "user_id": 2,
                "username": "tab\tnew\nline\r\\back\\N",
                "email": None,
                "full_name": 'quote " comma , NULL',
                "enrollment_id": None,
                "mode": None,
                "is_active": None,
                "created": None,
                "all_attributes": None,
                "fetched_at": None,
            },
            {
                "course_id": course_id,
                "user_id": 3,
                "username": "",
                "email": "\\N",
                "full_name": "NULL",
                "enrollment_id": base + 3,
                "mode": "verified",
                "is_active": False,
                "created": pd.Timestamp("2024-12-31 23:59:59", tz="UTC"),
                "all_attributes": [],
                "fetched_at": pd.Timestamp("2025-03-05 12:00:00", tz="UTC"),
            },
        ]
    )


def sort_rows(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    key = list(table_spec(table).unique_key)
    return frame.sort_values(key).reset_index(drop=True)


def db_rows(url: str, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
    eng = sa.create_engine(url)
    try:
        with eng.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql), params or {})]
    finally:
        eng.dispose()

"""Whole-pipeline benchmark at the ERD's scale: moocassets vs the original tool vs the floor.

    .venv/bin/python -m benchmarks.pipeline [--quick] [--database-url mysql+pymysql://root@127.0.0.1/]

One run, on this machine:

1. **Simulator** in its own process (``python -m moocassets.simulator``, so it does not share the
   pipeline's GIL) on a loopback port: ``--courses`` x ``--learners`` (10 x 1,000; ``--quick``:
   3 x 200) with ``--latency-ms`` (20) on every call.
2. **moocassets**: a full backfill of every asset for every course the way ``make demo`` drives it
   (one ``execute_in_process`` run of the ``course_refresh`` job -- every course-partitioned asset
   -- per course partition, ``DAGSTER_HOME`` in a temp dir) into a fresh MariaDB database, in a
   child process so its peak RSS is its own. Repeated at 1, 3 and all courses (each in a fresh
   database) to fit time vs courses. Wall time, peak RSS, requests (the simulator's
   ``/__sim__/stats``), rows per table, and per run a split of the wall time from Dagster's event
   log: outside steps, HTTP (the extracts' ``duration_s``), MySQL writes (the IO manager's
   ``write_duration_s``), the rest.
3. **The original tool's strategy** on the same world, into its own database with the same ERD
   DDL: one shared ``requests.Session``; MOOC login, M1 pages, M2 and the M4/M5/M6 exports once per
   course, one after the other; then ``ThreadPoolExecutor(8)`` with H1, H2, H3 one after the other
   per learner, no retries or backoff, each learner's rows saved as its three answers arrive;
   every row written with its own ``INSERT ... ON DUPLICATE KEY UPDATE`` and ``COMMIT`` (PyMySQL);
   then ``raw_data`` with 10 queries per learner (9 SELECTs, one upsert). When the first course
   shows that all courses would exceed ``--original-budget-s``, only ``--original-subset``
   courses run and the total is extrapolated linearly (the output says so).
4. **The floor**: the source calls the pipeline needs x latency / allowed concurrency (MOOC calls
   are a sequential chain per course: login, pages, M2, exports one step after another; H5P
   calls at ``H5PApiResource.max_concurrency``), plus the pure write time: every table's rows,
   as the backfill wrote them, formatted and ``LOAD DATA``-ed into empty tables, measured here.
5. One table with every figure and the ratios project/original and project/floor.
6. **Dagster routes and overheads**: one course through ``dagster job backfill`` + the daemon
   (``DefaultRunLauncher``: a run process per run), timed from submission to the run's success;
   a ``py-spy`` profile (when installed) of a one-course run, attributed by category and by
   function; and an incremental refresh of one course after ``POST /__sim__/enroll`` of 10
   learners.

Results: stdout, ``benchmarks/results/pipeline.json`` (with machine, load average, git commit) and
``benchmarks/results/pipeline.md``. Timings on a shared 2-core machine are noisy; each
configuration runs once (the load average is recorded before and after every phase).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from benchmarks.simulator_process import simulator_process
from moocassets.processes import stop_process_group

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
EMAIL = "bench@moocassets.local"
ORIGINAL_THREADS = 8
ENV_DB = "MOOCASSETS_DATABASE_URL"
COURSE_JOB = "course_refresh"  # every course-partitioned asset
ENV_PASSWORD = "MOOCASSETS_MOOC_PASSWORD"
ENV_DEFS = "MOOCASSETS_BENCH_DEFS"  # module:attribute of the Definitions to benchmark
ERD_TABLES = (
    "enrollments", "mooc_grades", "mooc_progress", "mooc_discussions", "h5p_scores",
    "h5p_scores_summary", "video_progress", "video_progress_summary", "dashboard_summary",
    "raw_data",
)  # fmt: skip


# =============================================================================================
# Pure helpers (unit-tested in moocassets_tests/benchmarks/test_pipeline_benchmark.py)
# =============================================================================================


def m1_pages(learners: int, page_size: int = 200) -> int:
    """M1 pages read for ``learners`` enrollments (paging stops at the first short page)."""
    return learners // page_size + 1


@dataclass(frozen=True)
class Floor:
    """The lower bound of a backfill: source calls x latency / concurrency, plus pure writes."""

    mooc_calls: int
    h5p_calls: int
    mooc_s: float
    h5p_s: float
    write_s: float

    @property
    def source_s(self) -> float:
        return self.mooc_s + self.h5p_s

    @property
    def total_s(self) -> float:
        return self.mooc_s + self.h5p_s + self.write_s

    def as_dict(self) -> dict[str, float | int]:
        return {
            "mooc_calls": self.mooc_calls, "h5p_calls": self.h5p_calls,
            "mooc_s": round(self.mooc_s, 3), "h5p_s": round(self.h5p_s, 3),
            "write_s": round(self.write_s, 3), "source_s": round(self.source_s, 3),
            "total_s": round(self.total_s, 3),
        }  # fmt: skip


def compute_floor(
    learners_per_course: Sequence[int],
    latency_s: float,
    h5p_concurrency: int,
    write_s: float,
    *,
    login_calls: int = 3,
) -> Floor:
    """Calls the pipeline needs x latency / the concurrency it is allowed.

    MOOC: one login (CSRF, login POST, ``users/me``) then, per course, a chain of M2, the M1 pages
    and the three exports, each waiting for the previous (concurrency 1). H5P: H1, H2 and H3 per
    learner at ``h5p_concurrency`` requests in flight. ``write_s`` is the measured pure write time.
    """
    if h5p_concurrency < 1:
        raise ValueError("h5p_concurrency must be >= 1")
    mooc_calls = login_calls + sum(1 + m1_pages(n) + 3 for n in learners_per_course)
    h5p_calls = 3 * sum(learners_per_course)
    return Floor(
        mooc_calls=mooc_calls,
        h5p_calls=h5p_calls,
        mooc_s=mooc_calls * latency_s,
        h5p_s=h5p_calls * latency_s / h5p_concurrency,
        write_s=write_s,
    )


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> dict[str, float]:
    """Least squares ``y = intercept + slope * x`` with R² (needs two distinct x)."""
    n = len(xs)
    if n != len(ys) or n < 2 or len(set(xs)) < 2:
        raise ValueError("need at least two points with distinct x")
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx
    intercept = my - slope * mx
    ss_res = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys, strict=True))
    ss_tot = sum((y - my) ** 2 for y in ys)
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    return {"intercept_s": intercept, "slope_s_per_course": slope, "r2": r2}


def scaling_verdict(courses: Sequence[float], wall_s: Sequence[float]) -> tuple[bool, str]:
    """Is wall time linear in the number of courses (an affine fit, R² ≥ 0.98, whose marginal
    cost does not grow: seconds per extra course between the last two points ≤ 1.25x those
    between the first two)?

    A fixed cost per run (the intercept) is allowed: a ranged run pays Dagster's run and step
    costs once, so its cost per course falls as courses are added; that is still linear."""
    fit = linear_fit(courses, wall_s)
    pts = sorted(zip(courses, wall_s, strict=True))
    (x0, y0), (x1, y1) = pts[-2], pts[-1]
    marginal = (y1 - y0) / (x1 - x0)
    first = (pts[1][1] - pts[0][1]) / (pts[1][0] - pts[0][0])
    linear = fit["r2"] >= 0.98 and marginal <= 1.25 * first
    text = (f"{fit['slope_s_per_course']:.2f} s per extra course + {fit['intercept_s']:.1f} s "
            f"per run, R² {fit['r2']:.4f}; marginal {marginal:.2f} s/course from {x0:g} to "
            f"{x1:g} courses")
    return linear, ("linear: " if linear else "NOT linear: ") + text


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if unit == "x":
            return f"{v:.2f}x"
        return f"{v:,.1f}{unit}" if abs(v) >= 10 else f"{v:.2f}{unit}"
    if isinstance(v, int):
        return f"{v:,}{unit}"
    return str(v)


def format_table(rows: Sequence[Sequence[Any]], header: Sequence[str], *, markdown: bool) -> str:
    """Rows of cells (numbers are formatted; a cell may be a ``(value, unit)`` pair)."""
    cells = [[_fmt(*c) if isinstance(c, tuple) else _fmt(c) for c in r] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in cells]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w)
                     for i, (h, w) in enumerate(zip(header, widths, strict=True)))]
    out.append("  ".join("-" * w for w in widths))
    for r in cells:
        out.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                             for i, (c, w) in enumerate(zip(r, widths, strict=True))))
    return "\n".join(out)


def summary_rows(res: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """The one table: figure | moocassets | original | floor | project/original | project/floor."""
    p, o, f = res["project"], res["original"], res["floor"]
    pc = res.get("per_course_runs")
    header = ["figure", "moocassets", "original", "floor", "project/original", "project/floor"]
    rows: list[list[Any]] = [
        ["wall time, full backfill, one run (s)", p["wall_s"], o["total_s_estimate"], f["total_s"],
         (ratio(p["wall_s"], o["total_s_estimate"]), "x"), (ratio(p["wall_s"], f["total_s"]), "x")],
        *([["wall time, one run per course (s)", pc["wall_s"], o["total_s_estimate"],
            f["total_s"], (ratio(pc["wall_s"], o["total_s_estimate"]), "x"),
            (ratio(pc["wall_s"], f["total_s"]), "x")]] if pc else []),
        ["  of which source calls (s)", p["http_s"], o["fetch_s_estimate"], f["source_s"],
         (ratio(p["http_s"], o["fetch_s_estimate"]), "x"),
         (ratio(p["http_s"], f["source_s"]), "x")],
        ["  of which MySQL writes (s)", p["write_s"], o["write_s_estimate"], f["write_s"],
         (ratio(p["write_s"], o["write_s_estimate"]), "x"),
         (ratio(p["write_s"], f["write_s"]), "x")],
        ["  of which everything else (s)", p["other_s"], o["other_s_estimate"], 0.0,
         (ratio(p["other_s"], o["other_s_estimate"]), "x"), None],
        ["requests sent", p["requests"], o["requests_estimate"], f["mooc_calls"] + f["h5p_calls"],
         (ratio(p["requests"], o["requests_estimate"]), "x"),
         (ratio(p["requests"], f["mooc_calls"] + f["h5p_calls"]), "x")],
        ["SQL statements (writes + reads)", None, o["statements_estimate"], None, None, None],
        ["peak RSS (MiB)", p["peak_rss_mib"], o["peak_rss_mib"], None,
         (ratio(p["peak_rss_mib"], o["peak_rss_mib"]), "x"), None],
        ["process wall incl. imports (s)", p["process_wall_s"], None, None, None, None],
    ]
    for t in ERD_TABLES:
        rows.append([f"rows {t}", p["rows"].get(t), o["rows_estimate"].get(t), None,
                     None, None])
    return header, rows


# =============================================================================================
# The original tool's strategy (reproduced)
# =============================================================================================


def _dt(value: Any) -> datetime | None:
    """ISO-8601 (with or without ``Z``/fraction) or ``YYYY-MM-DD HH:MM:SS`` → naive UTC."""
    if value in (None, ""):
        return None
    got = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return got.astimezone(UTC).replace(tzinfo=None) if got.tzinfo else got


def _unwrap(payload: Any, paths: Sequence[Sequence[str]]) -> list[dict[str, Any]]:
    for path in paths:
        cur: Any = payload
        for key in path:
            cur = cur.get(key) if isinstance(cur, dict) else None
        if isinstance(cur, list):
            return cur
    keys = sorted(payload) if isinstance(payload, dict) else type(payload).__name__
    raise ValueError(f"unknown envelope: {keys}")


@dataclass
class OriginalCounters:
    statements: int = 0
    commits: int = 0
    requests: int = 0
    rows: Counter[str] = field(default_factory=Counter)
    fetch_s: float = 0.0
    write_s: float = 0.0
    raw_data_s: float = 0.0


class OriginalTool:
    """The original tool's strategy, as docs/source-apis §7 and the IO note describe it.

    One shared ``requests.Session`` for both systems; ``ThreadPoolExecutor(8)`` for the per-learner
    H5P calls (H1, H2, H3 one after the other per learner, no retries, no backoff); every row is an
    ``INSERT ... ON DUPLICATE KEY UPDATE`` with its own COMMIT through PyMySQL; ``raw_data`` is
    aggregated with 9 SELECTs and one upsert per learner. Each learner's rows are written by the
    main thread as its answers arrive, so writing overlaps fetching (the most favourable reading).
    """

    def __init__(self, root: str, password: str, database_url: str, *, email: str = EMAIL,
                 threads: int = ORIGINAL_THREADS) -> None:
        import pymysql
        import requests
        import sqlalchemy as sa

        self.root, self.api, self.wp = (root, f"{root}/api/custom/v1", f"{root}/wp-json/mooc/v1")
        self.email, self._password, self.threads = email, password, threads
        url = sa.make_url(database_url)
        self.conn = pymysql.connect(
            host=url.host or "127.0.0.1", port=url.port or 3306, user=url.username or "root",
            password=url.password or "", database=url.database, charset="utf8mb4",
            autocommit=False,
        )
        self.session = requests.Session()
        self.session.headers.update({"Accept": "application/json"})
        self.counters = OriginalCounters()
        self._logged_in = False

    def close(self) -> None:
        self.session.close()
        self.conn.close()

    # -- HTTP -------------------------------------------------------------------------------
    def _get(self, url: str) -> Any:
        self.counters.requests += 1
        r = self.session.get(url, timeout=600)
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return r.json()

    def login(self) -> None:
        self.counters.requests += 3
        csrf = self.session.get(f"{self.root}/csrf/api/v1/token", timeout=30).json()["csrfToken"]
        self.session.post(
            f"{self.root}/api/user/v1/account/login_session/",
            data={"email": self.email, "password": self._password},
            headers={"X-CSRFToken": csrf, "Referer": f"{self.root}/login", "Origin": self.root},
            timeout=30,
        ).raise_for_status()
        self.session.get(f"{self.api}/users/me/", timeout=30).raise_for_status()
        self._logged_in = True

    # -- SQL --------------------------------------------------------------------------------
    def _upsert(self, table: str, row: dict[str, Any]) -> None:
        cols = list(row)
        sql = (
            f"INSERT INTO `{table}` ({', '.join(f'`{c}`' for c in cols)}) VALUES "
            f"({', '.join(['%s'] * len(cols))}) ON DUPLICATE KEY UPDATE "
            + ", ".join(f"`{c}` = VALUES(`{c}`)" for c in cols)
        )
        t0 = time.perf_counter()
        with self.conn.cursor() as cur:
            cur.execute(sql, [row[c] for c in cols])
        self.conn.commit()
        self.counters.write_s += time.perf_counter() - t0
        self.counters.statements += 1
        self.counters.commits += 1
        self.counters.rows[table] += 1

    def _one(self, sql: str, args: Sequence[Any]) -> tuple[Any, ...] | None:
        with self.conn.cursor() as cur:
            cur.execute(sql, list(args))
            got = cur.fetchone()
        self.counters.statements += 1
        return got

    # -- one course -------------------------------------------------------------------------
    def run_course(self, course_id: str, now: datetime | None = None) -> dict[str, float]:
        """Fetch and store every table of one course, then aggregate its ``raw_data``."""
        now = now or datetime.now(UTC).replace(tzinfo=None, microsecond=0)
        t_start = time.perf_counter()
        if not self._logged_in:
            self.login()
        enc = quote(course_id, safe="")
        t0 = time.perf_counter()
        items: list[dict[str, Any]] = []
        offset = 0
        while True:
            page = self._get(f"{self.api}/course-enrollments-attributes/{enc}/"
                             f"?limit=200&offset={offset}")
            got = _unwrap(page, (("data", "enrollments"), ("data",), ("enrollments",),
                                 ("results",)))
            items += got
            if len(got) < 200:
                break
            offset += 200
        self._get(f"{self.api}/course-details/display-name/?course_id={enc}")
        grades = _unwrap(self._get(f"{self.api}/export/student-grades/{enc}/"),
                         (("students",), ("grade_data", "grade_table")))
        progress = _unwrap(self._get(f"{self.api}/export/student-progress/{enc}/"),
                           (("students",), ("students_progress_data", "students_progress")))
        discussions = _unwrap(self._get(f"{self.api}/export/student-discussions/{enc}/"),
                              (("students",),))
        self.counters.fetch_s += time.perf_counter() - t0
        t_mooc_fetched = time.perf_counter()
        users: list[int] = []
        for it in items:
            uid = int(it.get("user_id", it.get("id")))
            users.append(uid)
            self._upsert("enrollments", {
                "course_id": course_id, "user_id": uid, "username": it.get("username"),
                "email": it.get("email"), "full_name": it.get("full_name"),
                "enrollment_id": it.get("enrollment_id"), "mode": it.get("mode"),
                "is_active": it.get("is_active"), "created": _dt(it.get("created")),
                "all_attributes": json.dumps({"student_info": it.get("student_info"),
                                              "all_attributes": it.get("all_attributes")},
                                             ensure_ascii=False),
                "fetched_at": now,
            })  # fmt: skip
        for g in grades:
            pct = g.get("grade_percentage")
            frac = g.get("percent_grade")
            self._upsert("mooc_grades", {
                "user_id": int(g["user_id"]), "course_id": course_id,
                "percent_grade": frac if frac is not None else (
                    None if pct is None else float(pct) / 100),
                "grade_percentage": pct if pct is not None else (
                    None if frac is None else float(frac) * 100),
                "letter_grade": g.get("letter_grade") or None, "is_passed": g.get("is_passed"),
                "fetched_at": now,
            })  # fmt: skip
        for p in progress:
            total, done = p.get("total_blocks"), p.get("completed_blocks")
            self._upsert("mooc_progress", {
                "user_id": int(p["user_id"]), "course_id": course_id, "total_blocks": total,
                "completed_blocks": done,
                "progress_percent": round(100 * done / total, 2) if total else
                p.get("completion_rate"),
                "current_chapter": p.get("current_chapter"),
                "current_section": p.get("current_section"),
                "current_unit": p.get("current_unit"),
                "completion_rate": p.get("completion_rate"),
                "last_activity": _dt(p.get("last_activity")), "fetched_at": now,
            })  # fmt: skip
        for d in discussions:
            self._upsert("mooc_discussions", {
                "user_id": int(d["user_id"]), "course_id": course_id,
                **{k: d.get(k) for k in ("threads_count", "comments_count", "total_interactions",
                                         "questions_count", "total_upvotes")},
                "fetched_at": now,
            })  # fmt: skip
        t_h5p = time.perf_counter()
        mooc_write = t_h5p - t_mooc_fetched

        def learner(uid: int) -> tuple[int, dict[str, Any]]:
            out: dict[str, Any] = {}
            for eid, route in (("H1", "scores"), ("H2", "video-progress"),
                               ("H3", "combined-progress")):
                r = self.session.get(f"{self.wp}/{route}/{uid}/{course_id}", timeout=30)
                out[eid] = r.json() if r.status_code == 200 else None
            return uid, out

        write_before = self.counters.write_s
        h5p_rows_before = self.counters.rows["h5p_scores"] + self.counters.rows["video_progress"]
        with ThreadPoolExecutor(self.threads) as pool:
            futures = [pool.submit(learner, u) for u in users]
            for fut in as_completed(futures):
                uid, got = fut.result()
                self.counters.requests += 3
                self._save_h5p(course_id, uid, got, now)
        h5p_s = time.perf_counter() - t_h5p
        h5p_write = self.counters.write_s - write_before
        self.counters.fetch_s += max(0.0, h5p_s - h5p_write)
        t_raw = time.perf_counter()
        self._raw_data(course_id, now)
        raw_s = time.perf_counter() - t_raw
        self.counters.raw_data_s += raw_s
        return {"total_s": time.perf_counter() - t_start, "mooc_fetch_s": t_mooc_fetched - t0,
                "mooc_write_s": mooc_write, "h5p_s": h5p_s, "h5p_write_s": h5p_write,
                "raw_data_s": raw_s,
                "h5p_detail_rows": self.counters.rows["h5p_scores"]
                + self.counters.rows["video_progress"] - h5p_rows_before}

    def _save_h5p(self, course_id: str, uid: int, got: dict[str, Any], now: datetime) -> None:
        h1, h2, h3 = got.get("H1"), got.get("H2"), got.get("H3")
        key = {"user_id": uid, "course_id": course_id}
        if h1:
            for s in h1.get("scores") or []:
                self._upsert("h5p_scores", {
                    **key, "content_id": int(s["content_id"]),
                    "content_title": s.get("content_title"), "score": s.get("score"),
                    "max_score": s.get("max_score"), "percentage": s.get("percentage"),
                    "fetched_at": now,
                })  # fmt: skip
            sm = h1.get("summary") or {}
            self._upsert("h5p_scores_summary", {
                **key, **{k: sm.get(k) for k in ("total_contents", "completed_contents",
                                                 "total_score", "total_max_score",
                                                 "overall_percentage")},
            })  # fmt: skip
        if h2:
            for v in h2.get("video_progress") or []:
                self._upsert("video_progress", {
                    **key, "content_id": int(v["content_id"]),
                    "content_title": v.get("content_title"),
                    "progress_percent": v.get("progress_percent"),
                    "current_time": v.get("current_time"), "duration": v.get("duration"),
                    "status": v.get("status"), "fetched_at": now,
                })  # fmt: skip
            sm = h2.get("summary") or {}
            self._upsert("video_progress_summary", {
                **key, **{k: sm.get(k) for k in ("total_videos", "completed_videos",
                                                 "in_progress_videos", "total_duration",
                                                 "total_watched_time")},
            })  # fmt: skip
        if h3:
            ov, sc, vp = h3.get("overall") or {}, h3.get("scores") or {}, \
                h3.get("video_progress") or {}
            self._upsert("dashboard_summary", {
                **key, "overall_completion": ov.get("overall_completion"),
                "total_items": ov.get("total_items"), "completed_items": ov.get("completed_items"),
                "h5p_total_contents": sc.get("total_contents"),
                "video_total_videos": vp.get("total_videos"), "source": "H3", "fetched_at": now,
            })  # fmt: skip

    def _raw_data(self, course_id: str, now: datetime) -> None:
        """~10 queries per learner: a SELECT per table, then one upsert (with its COMMIT)."""
        with self.conn.cursor() as cur:
            cur.execute("SELECT user_id FROM enrollments WHERE course_id = %s", [course_id])
            users = [int(r[0]) for r in cur.fetchall()]
        self.counters.statements += 1
        where = "WHERE user_id = %s AND course_id = %s"
        for uid in users:
            k = (uid, course_id)
            enr = self._one(f"SELECT created FROM enrollments {where}", k)
            gr = self._one("SELECT grade_percentage, letter_grade, is_passed FROM mooc_grades "
                           f"{where}", k)
            pr = self._one("SELECT progress_percent, current_chapter, current_section, "
                           f"current_unit, completion_rate, last_activity FROM mooc_progress "
                           f"{where}", k)
            di = self._one("SELECT threads_count, comments_count, total_interactions FROM "
                           f"mooc_discussions {where}", k)
            hs = self._one(f"SELECT total_contents FROM h5p_scores_summary {where}", k)
            vs = self._one(f"SELECT total_videos FROM video_progress_summary {where}", k)
            ds = self._one("SELECT overall_completion, h5p_total_contents, video_total_videos "
                           f"FROM dashboard_summary {where}", k)
            self._one(f"SELECT COUNT(*) FROM h5p_scores {where}", k)
            self._one(f"SELECT COUNT(*) FROM video_progress {where}", k)
            passed = bool(gr[2]) if gr and gr[2] is not None else False
            last = pr[5] if pr else None
            inactive = last is None or (now - last) > timedelta(days=21)
            self._upsert("raw_data", {
                "user_id": uid, "course_id": course_id,
                "enrollment_date": enr[0] if enr else None,
                "mooc_grade_percentage": gr[0] if gr else None,
                "mooc_letter_grade": gr[1] if gr else None,
                "mooc_is_passed": gr[2] if gr else None,
                "progress_percent": ds[0] if ds else (pr[0] if pr else None),
                "current_chapter": pr[1] if pr else None,
                "current_section": pr[2] if pr else None,
                "current_unit": pr[3] if pr else None,
                "mooc_completion_rate": pr[4] if pr else None,
                "h5p_total_contents": (ds[1] if ds else None) or (hs[0] if hs else None),
                "video_total_videos": (ds[2] if ds else None) or (vs[0] if vs else None),
                "discussion_threads_count": di[0] if di else 0,
                "discussion_comments_count": di[1] if di else 0,
                "discussion_total_interactions": di[2] if di else 0,
                "is_dropout": (not passed) and inactive, "as_of": now,
            })  # fmt: skip


def create_erd_tables(database_url: str) -> None:
    """The ten ERD tables with the project's DDL (empty)."""
    from moocassets.io import make_engine
    from moocassets.schema import table_spec

    engine = make_engine(database_url)
    import sqlalchemy as sa

    md = sa.MetaData()
    for name in ERD_TABLES:
        table_spec(name).sqlalchemy_table(md)
    md.create_all(engine)
    engine.dispose()


def count_rows(database_url: str) -> dict[str, int]:
    import sqlalchemy as sa

    engine = sa.create_engine(database_url)
    out: dict[str, int] = {}
    with engine.connect() as conn:
        for t in ERD_TABLES:
            try:
                out[t] = int(conn.exec_driver_sql(f"SELECT COUNT(*) FROM `{t}`").scalar_one())
            except sa.exc.ProgrammingError:
                out[t] = 0
    engine.dispose()
    return out


# =============================================================================================
# Workers (child processes, so each measured phase has its own peak RSS)
# =============================================================================================


def _step_breakdown(instance: Any, run_id: str) -> dict[str, Any]:
    """Per-step durations (STEP_START → STEP_SUCCESS) and HTTP/write seconds from metadata."""
    starts: dict[str, float] = {}
    steps: dict[str, dict[str, float]] = {}
    run_start = run_end = None
    events = 0
    kinds: Counter[str] = Counter()
    for entry in instance.all_logs(run_id):
        events += 1
        ev = entry.dagster_event
        if ev is None:
            kinds["log message"] += 1
            continue
        kind = ev.event_type.name  # (the enum *values* of run events still say PIPELINE_*)
        kinds[kind] += 1
        if kind == "RUN_START":
            run_start = entry.timestamp
        elif kind in ("RUN_SUCCESS", "RUN_FAILURE"):
            run_end = entry.timestamp
        elif kind == "STEP_START" and ev.step_key:
            starts[ev.step_key] = entry.timestamp
        elif kind == "STEP_SUCCESS" and ev.step_key in starts:
            steps.setdefault(ev.step_key, {})["s"] = entry.timestamp - starts[ev.step_key]
        elif kind == "ASSET_MATERIALIZATION" and ev.step_key:
            md = entry.asset_materialization.metadata if entry.asset_materialization else {}
            slot = steps.setdefault(ev.step_key, {})
            # one materialization per partition, each with the step's figures: count them once
            for src, dst in (("duration_s", "http_s"), ("write_duration_s", "write_s")):
                if src in md:
                    slot[dst] = max(slot.get(dst, 0.0), float(md[src].value))
    return {
        "steps": steps,
        "events": events,
        "event_types": dict(kinds.most_common()),
        "run_span_s": (run_end - run_start) if run_start and run_end else None,
        "steps_s": sum(s.get("s", 0.0) for s in steps.values()),
        "http_s": sum(s.get("http_s", 0.0) for s in steps.values()),
        "write_s": sum(s.get("write_s", 0.0) for s in steps.values()),
    }


def defs_target() -> str:
    """``module:attribute`` of the Definitions to run (default: the project's)."""
    return os.environ.get(ENV_DEFS) or "moocassets.definitions:defs"


def project_worker(cfg: dict[str, Any]) -> dict[str, Any]:
    """The ``course_refresh`` job (every course-partitioned asset; the unpartitioned risk model
    retrains on its weekly cron) in ``execute_in_process`` runs: ONE run over the range of all the
    courses (``single_run``, as ``python -m moocassets.backfill --all`` and the demo do), or one
    run per course (as the automation does)."""
    t_import = time.perf_counter()
    import importlib

    import dagster as dg

    from moocassets.backfill import execute_courses
    from moocassets.partitions import COURSE_PARTITIONS_NAME

    module, _, attr = defs_target().partition(":")
    defs = getattr(importlib.import_module(module), attr)
    import_s = time.perf_counter() - t_import
    # "ephemeral": in-memory run/event storage, to measure what the SQLite event log costs
    instance = dg.DagsterInstance.ephemeral() if cfg.get("ephemeral") else dg.DagsterInstance.get()
    known = set(instance.get_dynamic_partitions(COURSE_PARTITIONS_NAME))
    new = [c for c in cfg["courses"] if c not in known]
    if new:
        instance.add_dynamic_partitions(COURSE_PARTITIONS_NAME, new)
    job = defs.resolve_job_def(COURSE_JOB)
    courses = list(cfg["courses"])
    groups = [courses] if cfg.get("single_run", True) else [[c] for c in courses]
    runs: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for group in groups:
        t = time.perf_counter()
        result = execute_courses(  # as moocassets.backfill runs them
            job, instance, group, tags={"moocassets/source": "benchmark"},
            run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
        )
        wall = time.perf_counter() - t
        if not result.success:
            failed = [e.step_key for e in result.all_events if e.is_step_failure]
            raise RuntimeError(f"run for {group[0]}..{group[-1]} failed at {failed}")
        runs.append({"course_id": group[0], "courses": len(group), "wall_s": wall,
                     **_step_breakdown(instance, result.run_id)})
    return {"import_s": import_s, "wall_s": time.perf_counter() - t0, "runs": runs}


def original_worker(cfg: dict[str, Any]) -> dict[str, Any]:
    tool = OriginalTool(cfg["root"], os.environ[ENV_PASSWORD], os.environ[ENV_DB])
    per_course: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    try:
        for course_id in cfg["courses"]:
            per_course.append({"course_id": course_id, **tool.run_course(course_id)})
    finally:
        tool.close()
    c = tool.counters
    return {"wall_s": time.perf_counter() - t0, "per_course": per_course,
            "statements": c.statements, "commits": c.commits, "requests_client": c.requests,
            "rows": dict(c.rows), "fetch_s": c.fetch_s, "write_s": c.write_s,
            "raw_data_s": c.raw_data_s}


def vm_hwm_mib() -> float | None:
    """This process's peak RSS (``VmHWM``). Unlike ``ru_maxrss`` it starts afresh at ``exec``:
    a child's ``ru_maxrss`` inherits the parent's high-water mark through fork+exec."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


WORKERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "project": project_worker,
    "original": original_worker,
}


def run_worker(kind: str, cfg: dict[str, Any], env: dict[str, str], *,
               wrap: Sequence[str] = ()) -> dict[str, Any]:
    """Run a worker in a child process; adds ``process_wall_s`` and ``peak_rss_mib``."""
    with tempfile.TemporaryDirectory(prefix="bench-worker-") as tmp:
        cfg_path, out_path = Path(tmp) / "cfg.json", Path(tmp) / "out.json"
        cfg_path.write_text(json.dumps(cfg))
        cmd = [*wrap, sys.executable, "-m", "benchmarks.pipeline", "--worker", kind,
               "--worker-config", str(cfg_path), "--worker-output", str(out_path)]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"{kind} worker exited with {proc.returncode}")
        out = json.loads(out_path.read_text())
    out["process_wall_s"] = wall
    # the child's own VmHWM; ru_maxrss (KiB) would include the parent's RSS at fork time
    out["peak_rss_mib"] = out.get("vm_hwm_mib") or usage.ru_maxrss / 1024
    return out


# =============================================================================================
# Simulator, databases, Dagster homes
# =============================================================================================


@contextlib.contextmanager
def simulator(courses: int, learners: int, latency_ms: float, password: str) -> Iterator[str]:
    with simulator_process(courses=courses, learners=learners, latency_ms=latency_ms,
                           email=EMAIL, password=password, extra_args=["--now", "wall"]) as root:
        yield root


def _stop(proc: subprocess.Popen[Any]) -> None:
    stop_process_group(proc, timeout=20)


def sim_stats(root: str, reset: bool = True) -> dict[str, Any]:
    import httpx

    r = httpx.request("POST" if reset else "GET", f"{root}/__sim__/stats", timeout=30)
    r.raise_for_status()
    return dict(r.json())


class Databases:
    """Fresh databases on the server, all dropped at the end."""

    def __init__(self, server_url: str) -> None:
        import sqlalchemy as sa

        self.server = sa.make_url(server_url).set(database=None)
        self.tag = uuid.uuid4().hex[:6]
        self.names: list[str] = []

    def create(self, label: str) -> str:
        import sqlalchemy as sa

        name = f"bench_pipe_{label}_{self.tag}"
        eng = sa.create_engine(self.server)
        with eng.begin() as conn:
            conn.exec_driver_sql(
                f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        eng.dispose()
        self.names.append(name)
        return self.server.set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        import sqlalchemy as sa

        eng = sa.create_engine(self.server)
        with eng.begin() as conn:
            for name in self.names:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
        eng.dispose()

    def server_version(self) -> str:
        import sqlalchemy as sa

        eng = sa.create_engine(self.server)
        with eng.connect() as conn:
            v = str(conn.exec_driver_sql("SELECT VERSION()").scalar_one())
        eng.dispose()
        return v


# Where Dagster keeps runs and events during the benchmark: "mysql" (as in production,
# deploy/dagster.yaml: dagster-mysql in its own database on the same server) or "sqlite" (the
# local demo's default). Set from --instance-storage in main().
INSTANCE_STORAGE = {"kind": "mysql", "dbs": None}


def dagster_home(parent: Path, label: str) -> Path:
    import sqlalchemy as sa

    home = parent / f"dagster_home_{label}"
    home.mkdir(parents=True)
    config = (ROOT / "deploy" / "local" / "dagster.yaml").read_text()
    dbs = INSTANCE_STORAGE["dbs"]
    if INSTANCE_STORAGE["kind"] == "mysql" and isinstance(dbs, Databases):
        url = sa.make_url(dbs.create(f"{label}_dagster")).set(drivername="mysql+mysqlconnector")
        rendered = url.render_as_string(hide_password=False)
        config += f"storage:\n  mysql:\n    mysql_url: \"{rendered}\"\n"
    (home / "dagster.yaml").write_text(config)
    return home


def base_env(root: str, password: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "MOOCASSETS_MOOC_API_URL": f"{root}/api/custom/v1",
        "MOOCASSETS_H5P_API_URL": f"{root}/wp-json/mooc/v1",
        "MOOCASSETS_MOOC_EMAIL": EMAIL,
        ENV_PASSWORD: password,
    })  # fmt: skip
    env.pop("MOOCASSETS_MOOC_SESSIONID", None)
    return env


def _soft(name: str, fn: Callable[[], dict[str, Any] | None]) -> dict[str, Any] | None:
    """Run an optional phase; a failure is recorded (and printed), not fatal."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - reported in the results
        _log(f"{name} FAILED: {type(exc).__name__}: {str(exc)[-800:]}")
        return {"error": f"{type(exc).__name__}: {str(exc)[-800:]}"}


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _log(msg: str) -> None:
    print(f"[pipeline {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# =============================================================================================
# Phases
# =============================================================================================


def phase_project(root: str, password: str, dbs: Databases, tmp: Path, courses: list[str],
                  label: str, *, ephemeral: bool = False, single_run: bool = True,
                  ) -> dict[str, Any]:
    url = dbs.create(label)
    home = dagster_home(tmp, label)
    env = {**base_env(root, password), ENV_DB: url, "DAGSTER_HOME": str(home)}
    sim_stats(root)  # reset
    load_before = _load()
    out = run_worker("project", {"courses": courses, "ephemeral": ephemeral,
                                 "single_run": single_run}, env)
    stats = sim_stats(root)
    out.update(requests=int(stats["total"]), requests_by_route=stats["routes"],
               rows=count_rows(url), load_before=load_before, load_after=_load(),
               database_url=url, dagster_home=str(home), courses=len(courses),
               runs_count=len(out["runs"]), single_run=single_run)
    runs = out["runs"]
    out["http_s"] = sum(r["http_s"] for r in runs)
    out["write_s"] = sum(r["write_s"] for r in runs)
    out["other_s"] = out["wall_s"] - out["http_s"] - out["write_s"]
    out["outside_steps_s"] = sum(r["wall_s"] - r["steps_s"] for r in runs)
    out["in_steps_other_s"] = sum(r["steps_s"] - r["http_s"] - r["write_s"] for r in runs)
    out["events_per_run"] = sum(r["events"] for r in runs) / len(runs)
    out["events_per_course"] = sum(r["events"] for r in runs) / len(courses)
    _log(f"moocassets {label}: {len(courses)} course(s) in {len(runs)} run(s), "
         f"{out['wall_s']:.1f} s "
         f"(process {out['process_wall_s']:.1f} s, peak RSS {out['peak_rss_mib']:.0f} MiB, "
         f"{out['requests']} requests; http {out['http_s']:.1f} s, writes "
         f"{out['write_s']:.1f} s, outside steps {out['outside_steps_s']:.1f} s)")
    return out


def phase_bare_client(root: str, course_id: str, calls: int, concurrency: int,
                      latency_s: float) -> dict[str, Any]:
    """How close can ANY client get to the latency floor on this machine? ``calls`` H1 requests
    with a bare ``httpcore`` pool (no retries, parsing or logging) at ``concurrency`` in flight."""
    import asyncio

    import httpcore

    async def go() -> float:
        sem = asyncio.Semaphore(concurrency)
        async with httpcore.AsyncConnectionPool(max_connections=concurrency) as pool:
            async def one(uid: int) -> None:
                async with sem:
                    await pool.request("GET", f"{root}/wp-json/mooc/v1/scores/{uid}/{course_id}")

            t0 = time.perf_counter()
            await asyncio.gather(*(one(uid) for uid in range(1, calls + 1)))
            return time.perf_counter() - t0

    wall = asyncio.run(go())
    floor_s = calls * latency_s / concurrency
    out = {"calls": calls, "concurrency": concurrency, "wall_s": wall, "floor_s": floor_s,
           "over_floor": wall / floor_s, "answer_ms": 1000 * wall * concurrency / calls}
    _log(f"bare client: {calls} H1 calls at {concurrency} in flight in {wall:.2f} s (floor "
         f"{floor_s:.2f} s, {out['over_floor']:.2f}x; ≈ {out['answer_ms']:.1f} ms per answer)")
    return out


def phase_write_floor(source_url: str, dbs: Databases) -> dict[str, Any]:
    """Every table's rows as the backfill wrote them: TSV formatting + LOAD DATA into empty
    copies (one file per table, one transaction per table)."""
    from moocassets.io import make_engine
    from moocassets.io.load_format import load_data_bytes, prepare_frame
    from moocassets.io.read import read_table
    from moocassets.schema import table_spec

    target = dbs.create("writefloor")
    create_erd_tables(target)
    src, dst = make_engine(source_url), make_engine(target)
    per_table: dict[str, float] = {}
    for name in ERD_TABLES:
        spec = table_spec(name)
        frame = prepare_frame(spec, read_table(src, spec, None), None)
        t0 = time.perf_counter()
        data = load_data_bytes(spec, frame)
        fd, path = tempfile.mkstemp(suffix=".tsv")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        cols = ", ".join(f"`{c}`" for c in spec.column_names)
        try:
            with dst.begin() as conn:
                conn.exec_driver_sql(
                    f"LOAD DATA LOCAL INFILE %s INTO TABLE `{name}` CHARACTER SET utf8mb4 "
                    "FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' "
                    f"({cols})", (path,))
        finally:
            os.unlink(path)
        per_table[name] = time.perf_counter() - t0
    loaded = count_rows(target)
    src.dispose()
    dst.dispose()
    return {"per_table_s": per_table, "total_s": sum(per_table.values()), "rows": loaded}


def phase_original(root: str, password: str, dbs: Databases, courses: list[str],
                   budget_s: float, subset: int) -> dict[str, Any]:
    url = dbs.create("original")
    create_erd_tables(url)
    env = {**base_env(root, password), ENV_DB: url}
    n = len(courses)
    sim_stats(root)
    load_before = _load()
    first = run_worker("original", {"root": root, "courses": courses[:1]}, env)
    req_first = int(sim_stats(root)["total"])
    estimate = first["wall_s"] * n
    runs, requests = [first], req_first
    if n > 1:
        rest = courses[1:] if estimate <= budget_s else courses[1:max(1, subset)]
        if rest:
            _log(f"original: first course {first['wall_s']:.1f} s → {n} courses ≈ "
                 f"{estimate:.0f} s; running {'all' if len(rest) == n - 1 else len(rest) + 1} "
                 "course(s)")
            runs.append(run_worker("original", {"root": root, "courses": rest}, env))
            requests += int(sim_stats(root)["total"])
    measured = sum(len(r["per_course"]) for r in runs)
    scale = n / measured
    wall = sum(r["wall_s"] for r in runs)
    rows: Counter[str] = Counter()
    for r in runs:
        rows.update(r["rows"])
    db_rows = count_rows(url)
    out = {
        "courses_measured": measured, "courses_total": n, "extrapolated": measured < n,
        "extrapolation_factor": scale, "wall_s_measured": wall,
        "total_s_estimate": wall * scale,
        "fetch_s_estimate": sum(r["fetch_s"] for r in runs) * scale,
        "write_s_estimate": sum(r["write_s"] for r in runs) * scale,
        "raw_data_s_estimate": sum(r["raw_data_s"] for r in runs) * scale,
        "requests_measured": requests, "requests_estimate": round(requests * scale),
        "statements_measured": sum(r["statements"] for r in runs),
        "statements_estimate": round(sum(r["statements"] for r in runs) * scale),
        "rows_measured": db_rows,
        "rows_estimate": {t: round(v * scale) for t, v in db_rows.items()},
        "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
        "per_course": [c for r in runs for c in r["per_course"]],
        "load_before": load_before, "load_after": _load(),
    }  # fmt: skip
    out["courses_without_h5p_rows"] = [c["course_id"] for c in out["per_course"]
                                       if c["h5p_detail_rows"] == 0]
    out["other_s_estimate"] = (out["total_s_estimate"] - out["fetch_s_estimate"]
                               - out["write_s_estimate"])
    _log(f"original: {measured}/{n} course(s) measured in {wall:.1f} s → "
         f"{out['total_s_estimate']:.0f} s for {n}"
         + (" (EXTRAPOLATED linearly)" if out["extrapolated"] else ""))
    return out


def phase_daemon(root: str, password: str, dbs: Databases, tmp: Path, course_id: str,
                 timeout_s: float = 300) -> dict[str, Any]:
    """One course through ``dagster job backfill`` + ``dagster-daemon run``."""
    import dagster as dg

    url = dbs.create("daemon")
    home = dagster_home(tmp, "daemon")
    env = {**base_env(root, password), ENV_DB: url, "DAGSTER_HOME": str(home)}
    bin_dir = Path(sys.executable).parent
    module, _, attr = defs_target().partition(":")
    workspace = str(tmp / "workspace.yaml")
    Path(workspace).write_text(
        "load_from:\n  - python_module:\n"
        f"      module_name: {module}\n      attribute: {attr}\n"
        f"      working_directory: {ROOT}\n      location_name: moocassets\n")
    instance = dg.DagsterInstance.from_config(str(home))
    instance.add_dynamic_partitions("course_id", [course_id])
    sim_stats(root)
    daemon = subprocess.Popen([str(bin_dir / "dagster-daemon"), "run", "-w", workspace],
                              cwd=ROOT, env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(8)  # a user's daemon is already up; let it load the code location
        t0 = time.perf_counter()
        cli = subprocess.run(
            [str(bin_dir / "dagster"), "job", "backfill", "-w", workspace, "-j", COURSE_JOB,
             "--partitions", course_id, "--noprompt"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        t_cli = time.perf_counter() - t0
        if cli.returncode != 0:
            raise RuntimeError(f"dagster job backfill failed: {cli.stderr[-1500:]}")
        run = None
        t_created = None
        while time.perf_counter() - t0 < timeout_s:
            runs = instance.get_runs()
            if runs:
                run = runs[0]
                t_created = t_created or time.perf_counter() - t0
                if run.is_finished:
                    break
            time.sleep(0.25)
        total = time.perf_counter() - t0
        if run is None or not run.is_success:
            raise RuntimeError(f"daemon run did not succeed: {run.status if run else 'no run'}")
        stats = instance.get_run_stats(run.run_id)
        run_span = (stats.end_time or 0) - (stats.start_time or 0)
        launched = (stats.start_time or 0) - (stats.launch_time or stats.start_time or 0)
    finally:
        _stop(daemon)
    breakdown = _step_breakdown(instance, run.run_id)
    requests = int(sim_stats(root)["total"])
    out = {"submit_to_success_s": total, "cli_submit_s": t_cli, "run_created_after_s": t_created,
           "run_process_span_s": run_span, "launch_to_start_s": launched,
           "steps_s": breakdown["steps_s"], "http_s": breakdown["http_s"],
           "write_s": breakdown["write_s"], "events": breakdown["events"],
           "requests": requests, "rows": count_rows(url)}
    _log(f"daemon route: 1 course, submit → success {total:.1f} s (CLI {t_cli:.1f} s, run "
         f"span {run_span:.1f} s, steps {breakdown['steps_s']:.1f} s)")
    return out


def phase_incremental(root: str, password: str, main: dict[str, Any], course_id: str,
                      new: int = 10) -> dict[str, Any]:
    import httpx

    before = count_rows(main["database_url"])
    r = httpx.post(f"{root}/__sim__/enroll", json={"course_id": course_id, "count": new},
                   timeout=30)
    r.raise_for_status()
    env = {**base_env(root, password), ENV_DB: main["database_url"],
           "DAGSTER_HOME": main["dagster_home"]}
    sim_stats(root)
    out = run_worker("project", {"courses": [course_id]}, env)
    stats = sim_stats(root)
    after = count_rows(main["database_url"])
    run = out["runs"][0]
    res = {"new_enrollments": new, "wall_s": out["wall_s"], "process_wall_s": out["process_wall_s"],
           "requests": int(stats["total"]), "http_s": run["http_s"], "write_s": run["write_s"],
           "rows_delta": {t: after[t] - before[t] for t in ERD_TABLES},
           "peak_rss_mib": out["peak_rss_mib"]}
    _log(f"incremental: {course_id} after {new} enrolments re-materialized in "
         f"{out['wall_s']:.1f} s ({res['requests']} requests); rows Δ enrollments "
         f"{res['rows_delta']['enrollments']}, raw_data {res['rows_delta']['raw_data']}")
    return res


# ---------------------------------------------------------------------------------- profile

PROFILE_CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    # first match wins: specific work first, then "the rest of an extract step" = waiting for the
    # fan-out (directly, or on the next course's prefetch in a ranged run)
    ("MySQL writes (IO manager write_table)", ("write_table (moocassets/io/write",)),
    ("MySQL reads (IO manager load_input)", ("read_table (moocassets/io/read",)),
    ("extract store pickles", ("moocassets/io/extract_store.py", "moocassets/io/files.py")),
    ("dagster-pandas type checks", ("dagster_pandas/",)),
    ("transforms + schema coercion", ("moocassets/transforms/", "moocassets/schema.py")),
    ("Dagster event log / run storage writes", ("store_event (", "sqlite_event_log",
                                                "mysql_event_log", "handle_new_event")),
    ("waiting for HTTP (extract fan-outs/exports)", ("run (moocassets/sources/http.py",
                                                     "_asset (moocassets/assets/extract.py")),
    ("Dagster definitions / imports", ("_find_and_load (", "load_definitions")),
)


def parse_collapsed(lines: Sequence[str]) -> dict[str, Any]:
    """py-spy ``--format raw --threads --idle`` output → main-thread categories + hot leaves."""
    threads: Counter[str] = Counter()
    stacks: list[tuple[str, list[str], int]] = []
    for line in lines:
        line = line.rstrip("\n")
        if not line or " " not in line:
            continue
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        count = int(n)
        threads[frames[0]] += count
        stacks.append((frames[0], frames[1:], count))
    # the main thread is the one that ran the worker (benchmarks/pipeline.py's project_worker)
    main_counts: Counter[str] = Counter()
    for th, frames, count in stacks:
        if any("project_worker" in f for f in frames):
            main_counts[th] += count
    main = main_counts.most_common(1)[0][0] if main_counts else None
    cats: Counter[str] = Counter()
    total_main = 0
    leaves: Counter[str] = Counter()
    busy_total = 0
    for th, frames, count in stacks:
        leaf = frames[-1] if frames else "?"
        idle = any(k in leaf for k in ("select (", "epoll", "wait (threading", "poll (",
                                       "_wait_for_tstate_lock", "acquire ("))
        if not idle:
            leaves[_short_frame(leaf)] += count
            busy_total += count
        if th != main:
            continue
        total_main += count
        joined = ";".join(frames)
        for name, needles in PROFILE_CATEGORIES:
            if any(nd in joined for nd in needles):
                cats[name] += count
                break
        else:
            cats["Dagster framework, other"] += count
    return {
        "main_thread_samples": total_main,
        "main_thread_share": {k: v / total_main for k, v in cats.most_common()} if total_main
        else {},
        "busy_samples_all_threads": busy_total,
        "top_busy_functions": [(f, c / busy_total) for f, c in leaves.most_common(15)]
        if busy_total else [],
    }


def _short_frame(frame: str) -> str:
    # "func (path/to/module.py:123)" → "func (module.py)"
    name, _, rest = frame.partition(" (")
    path = rest.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({'/'.join(Path(path).parts[-2:])})"


def phase_profile(root: str, password: str, dbs: Databases, tmp: Path,
                  courses: list[str], quick: bool = False) -> dict[str, Any] | None:
    """py-spy over the headline route: one ranged run over ``courses``."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        _log("py-spy not installed: profile skipped (.venv/bin/pip install py-spy)")
        return None
    url = dbs.create("profile")
    home = dagster_home(tmp, "profile")
    env = {**base_env(root, password), ENV_DB: url, "DAGSTER_HOME": str(home)}
    raw = tmp / "profile.txt"
    out = run_worker("project", {"courses": courses, "single_run": True}, env,
                     wrap=[spy, "record", "--format", "raw", "--threads", "--idle",
                           "--nonblocking", "-r", "100", "-o", str(raw), "--"])
    parsed = parse_collapsed(raw.read_text().splitlines())
    parsed["wall_s"] = out["wall_s"]
    parsed["raw_file"] = str(raw)
    keep = RESULTS_DIR / f"pipeline_profile{'_quick' if quick else ''}.txt"
    shutil.copyfile(raw, keep)
    parsed["raw_file"] = str(keep.relative_to(ROOT))
    parsed["courses"] = len(courses)
    _log(f"profile (py-spy, {len(courses)} course(s), {out['wall_s']:.1f} s): " + ", ".join(
        f"{k} {v:.0%}" for k, v in list(parsed["main_thread_share"].items())[:5]))
    return parsed


# =============================================================================================
# Main
# =============================================================================================


def _git() -> dict[str, Any]:
    def run(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout

    return {"commit": run("rev-parse", "HEAD").strip(),
            "dirty_files": len([ln for ln in run("status", "--porcelain").splitlines() if ln])}


def _machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError):
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split(":", 1)[1].strip()
    import dagster

    return {"cpus": os.cpu_count(), "cpu": cpu, "mem_total": mem,
            "python": platform.python_version(), "platform": platform.platform(),
            "dagster": dagster.__version__}


def _markdown(res: dict[str, Any], table_md: str, scaling_md: str) -> str:
    cfg, p, o, f = res["config"], res["project"], res["original"], res["floor"]
    lines = [
        "# Whole-pipeline benchmark (`python -m benchmarks.pipeline"
        + (" --quick" if cfg["quick"] else "") + "`)",
        "",
        f"{cfg['courses']} courses x {cfg['learners']} learners, {cfg['latency_ms']:g} ms per "
        f"call (simulator in its own process), MariaDB `{res['server']}`, "
        f"{res['machine']['cpus']} CPUs ({res['machine']['cpu']}), load average "
        f"{res['load_start']} at start, {res['load_end']} at end; commit "
        f"`{res['git']['commit'][:10]}` ({res['git']['dirty_files']} uncommitted files). "
        "One run per configuration on a shared machine: expect ±15 % noise.",
        "",
        table_md,
        "",
        f"- moocassets: ONE `execute_in_process` run of the `course_refresh` job (every "
        "course-partitioned asset; the risk model retrains on its weekly cron) over the range of "
        f"all {p['courses']} courses, as `python -m moocassets.backfill --all` runs it; "
        "`one run per course` is the automation's route (failure isolation per course); `wall` "
        "excludes the child's imports (see `process wall`); the source-call, write and other "
        "lines split the one-run figure.",
        "- original: " + (
            f"**measured on {o['courses_measured']} of {o['courses_total']} courses and "
            f"extrapolated linearly (x{o['extrapolation_factor']:.1f})**"
            if o["extrapolated"] else f"measured on all {o['courses_total']} courses")
        + f"; raw_data aggregation {o['raw_data_s_estimate']:.0f} s of it"
        + (f"; it stored **no H5P rows** for {', '.join(o['courses_without_h5p_rows'])} "
           "(its unencoded course id 404s as an unmatched route and the original reads every "
           "404 as 'no data'; moocassets retries percent-encoded)"
           if o.get("courses_without_h5p_rows") else "") + ".",
        f"- floor: {f['mooc_calls']} MOOC calls in sequence + {f['h5p_calls']} H5P calls / "
        f"{cfg['h5p_concurrency']} in flight, x {cfg['latency_ms']:g} ms, + LOAD DATA of every "
        f"row ({f['write_s']:.1f} s measured).",
        "",
        "## Cost vs work",
        "",
        scaling_md,
        "",
        f"Fit: {res['scaling']['fit']['slope_s_per_course']:.2f} s per course "
        f"{res['scaling']['fit']['intercept_s']:+.2f} s, R² = {res['scaling']['fit']['r2']:.4f} "
        f"({res['scaling']['verdict']}).",
    ]
    if res.get("daemon") and "error" not in res["daemon"]:
        d = res["daemon"]
        lines += ["", "## Dagster routes and overhead", "",
                  f"- one ranged run over {p['courses']} courses: {p['wall_s']:.1f} s, Dagster "
                  f"outside the steps {res['overhead']['ranged_run_outside_steps_s']:.2f} s, "
                  f"{res['overhead']['ranged_run_events']:.0f} events",
                  f"- one run per course: {res['per_course_runs']['wall_s']:.1f} s, Dagster "
                  f"outside the steps {res['overhead']['outside_steps_s_per_run']:.2f} s/run, "
                  f"{res['overhead']['events_per_run']:.0f} events/run",
                  f"- `dagster job backfill` + daemon, 1 course: {d['submit_to_success_s']:.1f} s "
                  f"from submission to success (CLI {d['cli_submit_s']:.1f} s, run process "
                  f"{d['run_process_span_s']:.1f} s, steps {d['steps_s']:.1f} s)"]
    if res.get("bare_client") and "error" not in res["bare_client"]:
        b = res["bare_client"]
        lines += [f"- a bare `httpcore` client (no retries, parsing or logging), {b['calls']:,} H1 "
                  f"calls at {b['concurrency']} in flight: {b['wall_s']:.2f} s against "
                  f"{b['floor_s']:.2f} s of latency floor ({b['over_floor']:.2f}x): the simulator "
                  f"answers in ≈ {b['answer_ms']:.1f} ms, not {cfg['latency_ms']:g} ms, so no "
                  "client reaches the floor here"]
    if res.get("ephemeral_instance_1_course"):
        e = res["ephemeral_instance_1_course"]
        lines += [f"- the same 1-course run with an in-memory (ephemeral) Dagster instance: "
                  f"{e['wall_s']:.1f} s vs {e['sqlite_wall_s']:.1f} s with the "
                  f"{res['config']['instance_storage']} instance storage: the event log's "
                  f"{e['events_per_run']:.0f} writes cost "
                  f"≈ {e['event_storage_cost_s']:.1f} s per run"]
    if res.get("incremental") and "error" not in res["incremental"]:
        i = res["incremental"]
        lines += [f"- incremental refresh of 1 course after {i['new_enrollments']} new "
                  f"enrolments: {i['wall_s']:.1f} s, {i['requests']} requests, rows Δ "
                  f"enrollments {i['rows_delta']['enrollments']:+d}, raw_data "
                  f"{i['rows_delta']['raw_data']:+d}"]
    if res.get("profile") and "error" not in res["profile"]:
        pr = res["profile"]
        lines += ["", f"## Where the time goes (py-spy, main thread; one ranged run over "
                  f"{pr.get('courses', 1)} course(s))", ""]
        lines += [f"- {k}: {v:.0%}" for k, v in pr["main_thread_share"].items()]
        lines += ["", "Hottest functions (busy samples, all threads):", ""]
        lines += [f"- `{fn}` {share:.1%}" for fn, share in pr["top_busy_functions"][:10]]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.pipeline",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 courses x 200 learners (~2 min)")
    ap.add_argument("--courses", type=int)
    ap.add_argument("--learners", type=int)
    ap.add_argument("--latency-ms", type=float, default=20.0)
    ap.add_argument("--database-url",
                    default=os.environ.get("MOOCASSETS_BENCH_DATABASE_URL",
                                           "mysql+pymysql://root@127.0.0.1:3306/"))
    ap.add_argument("--original-budget-s", type=float, default=360.0,
                    help="run the original on every course only if the first course says it "
                    "fits this budget; else on --original-subset courses, extrapolated")
    ap.add_argument("--original-subset", type=int, default=2)
    ap.add_argument("--no-daemon", action="store_true", help="skip the daemon/CLI route")
    ap.add_argument("--no-profile", action="store_true", help="skip the py-spy profile")
    ap.add_argument("--instance-storage", choices=("mysql", "sqlite"), default="mysql",
                    help="Dagster's run/event storage: mysql (production's) or sqlite (the demo's)")
    ap.add_argument("--output-dir", default=str(RESULTS_DIR))
    ap.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    ap.add_argument("--worker-config", help=argparse.SUPPRESS)
    ap.add_argument("--worker-output", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        cfg = json.loads(Path(args.worker_config).read_text())
        out = WORKERS[args.worker](cfg)
        out["vm_hwm_mib"] = vm_hwm_mib()
        Path(args.worker_output).write_text(json.dumps(out))
        return 0

    n_courses = args.courses or (3 if args.quick else 10)
    learners = args.learners or (200 if args.quick else 1000)
    from moocassets.sources import H5PApiResource

    h5p_conc = int(H5PApiResource.model_fields["max_concurrency"].default)
    latency_s = args.latency_ms / 1000
    password = uuid.uuid4().hex  # handed to children via the environment, never printed
    t_start = time.perf_counter()
    load_start = _load()
    dbs = Databases(args.database_url)
    INSTANCE_STORAGE.update(kind=args.instance_storage, dbs=dbs)
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    res: dict[str, Any] = {
        "benchmark": "pipeline", "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": {"quick": args.quick, "courses": n_courses, "learners": learners,
                   "latency_ms": args.latency_ms, "h5p_concurrency": h5p_conc,
                   "instance_storage": args.instance_storage,
                   "original_threads": ORIGINAL_THREADS,
                   "original_budget_s": args.original_budget_s},
        "machine": _machine(), "git": _git(), "load_start": load_start,
        "server": dbs.server_version(),
    }  # fmt: skip
    _log(f"{n_courses} courses x {learners} learners, {args.latency_ms:g} ms/call; "
         f"{os.cpu_count()} CPUs, load average {load_start}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    try:
        with simulator(n_courses, learners, args.latency_ms, password) as root:
            import httpx

            courses = [c["id"] for c in httpx.get(
                f"{root}/api/custom/v1/course-details/all/", timeout=30).json()["data"]]
            # learners per course as served (M1 totals), for the floor
            # -- 2 + 6: moocassets at 1, 3, N courses ------------------------------------
            points = sorted({1, min(3, n_courses), n_courses})
            scaling: list[dict[str, Any]] = []
            main_run: dict[str, Any] = {}
            for k in points:
                r = phase_project(root, password, dbs, tmp, courses[:k], f"c{k}")
                scaling.append(r)
                if k == n_courses:
                    main_run = r
            # the automation's route: one run per course (failure isolation per course)
            per_course_runs = phase_project(root, password, dbs, tmp, courses, "pc",
                                            single_run=False)
            # Dagster's event storage: the 1-course run again with an in-memory instance
            ephemeral = _soft("ephemeral instance", lambda: phase_project(
                root, password, dbs, tmp, courses[:1], "eph", ephemeral=True))
            # -- 4: the floor ----------------------------------------------------------------
            enrolled = [main_run["rows"]["enrollments"] // n_courses] * n_courses
            wf = phase_write_floor(main_run["database_url"], dbs)
            floor = compute_floor(enrolled, latency_s, h5p_conc, wf["total_s"])
            scaled_floors = {
                k: compute_floor(enrolled[:k], latency_s, h5p_conc,
                                 wf["total_s"] * k / n_courses).total_s for k in points}
            _log(f"floor: {floor.total_s:.1f} s (MOOC {floor.mooc_s:.1f} s, H5P "
                 f"{floor.h5p_s:.1f} s, LOAD DATA {floor.write_s:.1f} s)")
            bare = _soft("bare client", lambda: phase_bare_client(
                root, courses[0], learners, h5p_conc, latency_s))
            # -- 3: the original tool ----------------------------------------------------
            orig = phase_original(root, password, dbs, courses, args.original_budget_s,
                                  args.original_subset)
            # -- Dagster routes, profile, incremental (last: it changes the world) -------
            daemon = None if args.no_daemon else _soft(
                "daemon route", lambda: phase_daemon(root, password, dbs, tmp, courses[0]))
            profile = None if args.no_profile else _soft(
                "profile", lambda: phase_profile(root, password, dbs, tmp, courses[:3],
                                                 args.quick))
            incremental = _soft(
                "incremental", lambda: phase_incremental(root, password, main_run, courses[0]))
        fit = linear_fit([float(p["courses"]) for p in scaling], [p["wall_s"] for p in scaling])
        per_course = [p["wall_s"] / p["courses"] for p in scaling]
        spread = max(per_course) / min(per_course)
        linear, verdict = scaling_verdict([float(p["courses"]) for p in scaling],
                                          [p["wall_s"] for p in scaling])
        res.update({
            "project": {k: v for k, v in main_run.items()
                        if k not in ("database_url", "dagster_home")},
            "original": orig, "floor": floor.as_dict(), "write_floor": wf,
            "scaling": {
                "points": [{"courses": p["courses"], "wall_s": p["wall_s"],
                            "per_course_s": p["wall_s"] / p["courses"],
                            "floor_s": scaled_floors[p["courses"]],
                            "over_floor": p["wall_s"] / scaled_floors[p["courses"]],
                            "requests": p["requests"], "peak_rss_mib": p["peak_rss_mib"],
                            "http_s": p["http_s"], "write_s": p["write_s"],
                            "outside_steps_s": p["outside_steps_s"]} for p in scaling],
                "fit": fit, "per_course_spread": spread,
                "linear": linear, "verdict": verdict},
            "per_course_runs": {
                k: v for k, v in per_course_runs.items()
                if k not in ("database_url", "dagster_home", "runs")
            } | {"over_floor": ratio(per_course_runs["wall_s"], floor.total_s)},
            "overhead": {
                "ranged_run_outside_steps_s": main_run["outside_steps_s"],
                "ranged_run_events": main_run["events_per_run"],
                "outside_steps_s_per_run": per_course_runs["outside_steps_s"] / n_courses,
                "in_steps_other_s_per_run": per_course_runs["in_steps_other_s"] / n_courses,
                "events_per_run": per_course_runs["events_per_run"],
                "import_s": main_run["import_s"],
                "process_start_s": main_run["process_wall_s"] - main_run["wall_s"],
            },
            "daemon": daemon, "profile": profile, "incremental": incremental,
            "bare_client": bare,
            "ephemeral_instance_1_course": None if not ephemeral or "error" in ephemeral else {
                "wall_s": ephemeral["wall_s"], "events_per_run": ephemeral["events_per_run"],
                "sqlite_wall_s": scaling[0]["wall_s"],
                "event_storage_cost_s": scaling[0]["wall_s"] - ephemeral["wall_s"]},
            "targets": {
                "speedup_vs_original": ratio(orig["total_s_estimate"], main_run["wall_s"]),
                "over_floor": ratio(main_run["wall_s"], floor.total_s),
            },
        })  # fmt: skip
    finally:
        with contextlib.suppress(Exception):
            dbs.drop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    res["load_end"] = _load()
    res["elapsed_s"] = time.perf_counter() - t_start

    header, rows = summary_rows(res)
    print("\n" + format_table(rows, header, markdown=False))
    sc_header = ["courses", "wall s", "s/course", "floor s", "x floor", "requests",
                 "peak RSS MiB"]
    sc_rows = [[p["courses"], p["wall_s"], p["per_course_s"], p["floor_s"],
                (p["over_floor"], "x"), p["requests"], p["peak_rss_mib"]]
               for p in res["scaling"]["points"]]
    print("\n" + format_table(sc_rows, sc_header, markdown=False))
    fit = res["scaling"]["fit"]
    print(f"fit: {fit['slope_s_per_course']:.2f} s/course {fit['intercept_s']:+.2f} s, "
          f"R² {fit['r2']:.4f} → {res['scaling']['verdict']}")
    t = res["targets"]
    print(f"\ntargets: {t['speedup_vs_original']:.1f}x faster than the original "
          f"({'meets' if t['speedup_vs_original'] >= 10 else 'MISSES'} ≥ 10x); "
          f"{t['over_floor']:.2f}x the floor ({'meets' if t['over_floor'] <= 2 else 'MISSES'} "
          f"≤ 2x)" + ("; original EXTRAPOLATED from "
                      f"{res['original']['courses_measured']} course(s)"
                      if res["original"]["extrapolated"] else ""))
    print(f"load average: start {res['load_start']}, end {res['load_end']}; "
          f"benchmark took {res['elapsed_s']:.0f} s")
    name = "pipeline_quick" if args.quick else "pipeline"
    (out_dir / f"{name}.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    (out_dir / f"{name}.md").write_text(
        _markdown(res, format_table(rows, header, markdown=True),
                  format_table(sc_rows, sc_header, markdown=True)))
    print(f"wrote {out_dir / name}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())

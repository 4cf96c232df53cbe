"""Bulk-load benchmark: the warehouse IO manager versus pandas ``to_sql``.

Writes the ERD's largest table at its estimated size -- 100,000 ``h5p_scores`` rows (10 courses x
1,000 learners x 10 contents, Vietnamese titles) -- into a fresh database on the server, with the
declared DDL (unique key + 2 secondary indexes), and prints rows/s per method and the ratio to
pandas' default ``to_sql``. Every run starts from an empty table (TRUNCATE) and ends at COMMIT;
times include converting the DataFrame. Also profiles where the IO manager's time goes.

    .venv/bin/python -m benchmarks.io_bulk_load [--database-url mysql+pymysql://root@127.0.0.1/]
        [--repeat 3] [--output benchmarks/results/io_bulk_load.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from moocassets.io.engine import make_engine, safe_url
from moocassets.io.load_format import load_data_bytes, prepare_frame
from moocassets.io.write import WriteOptions, write_table
from moocassets.schema import table_spec

SPEC = table_spec("h5p_scores")
COURSES = [f"course-v1:DHQG-HCM+FM{101 + i}+2025_S2" for i in range(10)]


def build_frame(learners: int = 1000, contents: int = 10, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n_course = learners * contents
    n = n_course * len(COURSES)
    user = np.tile(np.repeat(np.arange(1, learners + 1), contents), len(COURSES))
    # learners overlap across courses, as real ones do: shift ids per course
    user = user + np.repeat(np.arange(len(COURSES)) * (learners // 2), n_course)
    content = np.tile(np.arange(contents), learners * len(COURSES))
    score = rng.integers(0, 11, n)
    opened = pd.Timestamp("2025-02-01", tz="UTC") + pd.to_timedelta(
        rng.integers(0, 90 * 86400, n), unit="s"
    )
    finished = opened + pd.to_timedelta(rng.integers(60, 7200, n), unit="s")
    finished_mask = rng.random(n) < 0.7
    titles = [
        f"Bài tập {c + 1} - Chương {c // 3 + 1}: Ôn luyện kiến thức về quản trị"
        for c in range(contents)
    ]
    frame = pd.DataFrame(
        {
            "user_id": user,
            "course_id": np.repeat(COURSES, n_course),
            "content_id": content + 1000,
            "content_title": np.array(titles, dtype=object)[content],
            "score": score,
            "max_score": 10,
            "percentage": score * 10.0,
            "opened_at": opened,
            "finished_at": finished.where(finished_mask),
            "is_finished": finished_mask,
            "time_spent": np.round(rng.random(n) * 3600, 2),
            "folder_id": content // 3 + 1,
            "folder_name": np.array(["Chương 1", "Chương 2", "Chương 3", "Chương 4"],
                                    dtype=object)[content // 3],
            "fetched_at": pd.Timestamp("2025-05-01 10:00:00", tz="UTC"),
        }
    )
    # shuffle within each course
    return frame.sample(frac=1.0, random_state=seed).sort_values("course_id", kind="stable") \
        .reset_index(drop=True)


def pandas_input(frame: pd.DataFrame) -> pd.DataFrame:
    """What a to_sql user would pass: naive UTC datetimes (tz-aware ones need conversion)."""
    out = frame.copy()
    for c in ("opened_at", "finished_at", "fetched_at"):
        out[c] = out[c].dt.tz_convert("UTC").dt.tz_localize(None)
    return out


def timed(fn: Callable[[], Any], reset: Callable[[], None], repeat: int) -> list[float]:
    out: list[float] = []
    for _ in range(repeat):
        reset()
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--database-url", default="mysql+pymysql://root@127.0.0.1:3306/")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--multi-repeat", type=int, default=1,
                    help="repeats of the slow to_sql(method='multi') variant")
    ap.add_argument("--output", default="benchmarks/results/io_bulk_load.json")
    args = ap.parse_args(argv)

    server = sa.make_url(args.database_url)
    db = f"bench_io_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(server.set(database=None))
    with admin.begin() as conn:
        conn.exec_driver_sql(
            f"CREATE DATABASE `{db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
        )
    url = server.set(database=db)
    results: dict[str, Any] = {}
    try:
        engine = make_engine(url)
        SPEC.sqlalchemy_table().create(engine)
        frame = build_frame()
        n = len(frame)
        pinput = pandas_input(frame)

        def truncate() -> None:
            with engine.begin() as conn:
                conn.exec_driver_sql("TRUNCATE TABLE h5p_scores")

        def check(expected: int) -> None:
            with engine.connect() as conn:
                got = conn.exec_driver_sql("SELECT COUNT(*) FROM h5p_scores").scalar_one()
            assert got == expected, (got, expected)

        def to_sql_default() -> None:
            with engine.begin() as conn:
                pinput.to_sql("h5p_scores", conn, if_exists="append", index=False)
            check(n)

        def to_sql_multi() -> None:
            with engine.begin() as conn:
                pinput.to_sql("h5p_scores", conn, if_exists="append", index=False,
                              method="multi", chunksize=1000)
            check(n)

        opts = WriteOptions()
        parts = {c: frame[frame["course_id"] == c] for c in COURSES}

        def io_partitions() -> None:
            for c, part in parts.items():
                write_table(engine, SPEC, part, [c], opts)
            check(n)

        def io_single() -> None:
            write_table(engine, SPEC, frame, COURSES, opts)
            check(n)

        def io_insert_fallback() -> None:
            write_table(engine, SPEC, frame, COURSES, WriteOptions(use_load_data=False))
            check(n)

        methods: list[tuple[str, Callable[[], None], int]] = [
            ("to_sql_default", to_sql_default, args.repeat),
            ("to_sql_multi_chunk1000", to_sql_multi, args.multi_repeat),
            ("io_manager_10_partition_writes", io_partitions, args.repeat),
            ("io_manager_one_write_all_partitions", io_single, args.repeat),
            ("io_manager_insert_fallback_one_write", io_insert_fallback, 1),
        ]
        for name, fn, rep in methods:
            times = timed(fn, truncate, rep)
            med = statistics.median(times)
            results[name] = {
                "runs_s": [round(t, 3) for t in times],
                "median_s": round(med, 3),
                "rows_per_s_median": round(n / med),
                "rows_per_s_best": round(n / min(times)),
            }
            print(f"{name:40s} median {med:6.2f}s  {n / med:9,.0f} rows/s  "
                  f"(runs {', '.join(f'{t:.2f}' for t in times)})", flush=True)

        base = results["to_sql_default"]["rows_per_s_median"]
        for r in results.values():
            r["vs_to_sql_default"] = round(r["rows_per_s_median"] / base, 2)

        # ---- where the IO manager's time goes (one write of all 100k rows) ----
        truncate()
        t0 = time.perf_counter()
        coerced = prepare_frame(SPEC, frame, COURSES)
        t_prepare = time.perf_counter() - t0
        t0 = time.perf_counter()
        data = load_data_bytes(SPEC, coerced)
        t_format = time.perf_counter() - t0
        fd, path = tempfile.mkstemp(suffix=".tsv")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        cols = ", ".join(f"`{c}`" for c in SPEC.column_names)
        try:
            t0 = time.perf_counter()
            with engine.begin() as conn:
                conn.exec_driver_sql(
                    "LOAD DATA LOCAL INFILE %s INTO TABLE h5p_scores CHARACTER SET utf8mb4 "
                    "FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' "
                    f"({cols})", (path,))
            t_load = time.perf_counter() - t0
        finally:
            os.unlink(path)
        t0 = time.perf_counter()
        check(n)
        t_count = time.perf_counter() - t0
        with engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM h5p_scores")  # same DDL, measure a DELETE-all
        profile = {
            "coerce_and_validate_s": round(t_prepare, 3),
            "format_tsv_s": round(t_format, 3),
            "tsv_mb": round(len(data) / 1e6, 1),
            "server_load_data_one_file_s": round(t_load, 3),
            "server_load_rows_per_s": round(n / t_load),
            "count_rows_s": round(t_count, 3),
        }
        print("profile:", json.dumps(profile), flush=True)

        with engine.connect() as conn:
            version = conn.exec_driver_sql("SELECT VERSION()").scalar_one()
        out = {
            "rows": n,
            "server": version,
            "database_url": safe_url(url),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "pandas": pd.__version__, "sqlalchemy": sa.__version__},
            "results": results,
            "profile_io_manager_one_write": profile,
        }
        best_to_sql = max(results["to_sql_default"]["rows_per_s_median"],
                          results["to_sql_multi_chunk1000"]["rows_per_s_median"])
        for name in ("io_manager_10_partition_writes", "io_manager_one_write_all_partitions"):
            r = results[name]
            print(f"{name}: {r['vs_to_sql_default']}x to_sql default, "
                  f"{r['rows_per_s_median'] / best_to_sql:.2f}x the best to_sql variant")
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.output}")
        return out
    finally:
        make_engine(url).dispose()
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{db}`")
        admin.dispose()


if __name__ == "__main__":
    main()

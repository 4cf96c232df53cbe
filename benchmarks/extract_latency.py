"""Extraction latency: moocassets' source clients vs the original tool vs the latency floor.

    .venv/bin/python -m benchmarks.extract_latency [--sizes 100,1000,5000] [--latency-ms 20]

For each course size the simulator runs on a loopback port (its own process by default, so client
and server do not share one GIL on a 2-core machine; ``--in-thread`` uses ``serve_in_thread``)
with one course and a fixed latency on every call. Three numbers per size:

* **ours**: ``MoocApiResource`` (login, all M1 pages, then M4/M5/M6 exports issued together from
  three threads on the shared session) + ``H5PApiResource`` H1, H2, H3 fan-outs at the default
  concurrency (16, adaptive), one keep-alive client per system.
* **original**: the original tool's strategy, reproduced: one shared synchronous session
  (``httpx.Client``, standing in for ``requests.Session``), MOOC pages and exports one after the
  other, then ``ThreadPoolExecutor(8)`` with three sequential H5P calls (H1, H2, H3) per learner per
  thread; no retries, no backoff.
* **floor**: calls x latency / concurrency per phase: M1 pages are a dependency chain (sequential),
  the three exports one round, and the H5P calls 3N x latency / 16.

Results go to stdout and ``benchmarks/results/extract_latency.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from benchmarks.simulator_process import simulator_process
from moocassets.sources import H5PApiResource, MoocApiResource

EMAIL = "bench@moocassets.local"
PASSWORD = "bench-password-not-secret"
RESULTS = Path(__file__).resolve().parent / "results" / "extract_latency.json"
ORIGINAL_THREADS = 8


@contextmanager
def simulator(learners: int, latency_ms: float, in_thread: bool) -> Iterator[str]:
    """A one-course simulator with ``learners`` learners; yields the root URL."""
    if in_thread:
        from moocassets.simulator import FaultConfig, World, WorldConfig, create_app
        from moocassets.simulator import serve_in_thread as serve

        world = World(WorldConfig(courses=1, learners=learners, seed=7))
        app = create_app(
            world,
            mooc_email=EMAIL,
            mooc_password=PASSWORD,
            faults=FaultConfig(latency_ms=latency_ms),
        )
        with serve(app) as root:
            yield root
        return
    with simulator_process(courses=1, learners=learners, latency_ms=latency_ms, email=EMAIL,
                           password=PASSWORD, start_timeout_s=60) as root:
        yield root


def course_id_of(root: str) -> str:
    courses = httpx.get(f"{root}/api/custom/v1/course-details/all/", timeout=10).json()["data"]
    return str(courses[0]["id"])


# ------------------------------------------------------------------------------------------ ours


def run_ours(root: str, course: str) -> dict[str, Any]:
    mooc = MoocApiResource(base_url=f"{root}/api/custom/v1", email=EMAIL, password=PASSWORD)
    h5p = H5PApiResource(base_url=f"{root}/wp-json/mooc/v1")
    t0 = time.perf_counter()
    with mooc.session(), h5p.session():
        enrol = mooc.enrollments(course)
        uids = [int(e.get("user_id", e.get("id"))) for e in enrol.data]
        with ThreadPoolExecutor(3) as pool:  # the three exports share the MOOC session
            exports = list(
                pool.map(lambda f: f(course), (mooc.grades, mooc.progress, mooc.discussions))
            )
        t_mooc = time.perf_counter() - t0
        t1 = time.perf_counter()
        fans = [h5p.scores(course, uids), h5p.video_progress(course, uids)]
        fans.append(h5p.dashboards(course, uids))  # type: ignore[arg-type]
        t_h5p = time.perf_counter() - t1
    total = time.perf_counter() - t0
    h5p_requests = sum(f.stats.requests for f in fans)
    mooc_requests = enrol.stats.requests + sum(e.stats.requests for e in exports)
    rows = [len(f.data) for f in fans]
    assert rows == [len(uids)] * 3, rows
    return {
        "total_s": total,
        "mooc_s": t_mooc,
        "h5p_s": t_h5p,
        "learners": len(uids),
        "pages": enrol.stats.pages,
        "mooc_requests": mooc_requests,
        "h5p_requests": h5p_requests,
        "retries": sum(f.stats.retries for f in fans),
    }


# ------------------------------------------------------------------------------------- original


def run_original(root: str, course: str) -> dict[str, Any]:
    """The original tool: one shared sync session, 8 threads, 3 sequential calls per learner."""
    api, wp = f"{root}/api/custom/v1", f"{root}/wp-json/mooc/v1"
    from urllib.parse import quote

    cid = quote(course, safe="")
    t0 = time.perf_counter()
    with httpx.Client(timeout=30.0) as session:
        csrf = session.get(f"{root}/csrf/api/v1/token").json()["csrfToken"]
        session.post(
            f"{root}/api/user/v1/account/login_session/",
            data={"email": EMAIL, "password": PASSWORD},
            headers={"X-CSRFToken": csrf, "Referer": f"{root}/login", "Origin": root},
        ).raise_for_status()
        users: list[int] = []
        offset = 0
        while True:
            page = session.get(
                f"{api}/course-enrollments-attributes/{cid}/?limit=200&offset={offset}"
            ).json()
            items = _m1_items(page)
            users += [int(i.get("user_id", i.get("id"))) for i in items]
            if len(items) < 200:
                break
            offset += 200
        for route in ("student-grades", "student-progress", "student-discussions"):
            session.get(f"{api}/export/{route}/{cid}/").json()
        t_mooc = time.perf_counter() - t0
        t1 = time.perf_counter()

        def learner(uid: int) -> int:
            got = 0
            for route in ("scores", "video-progress", "combined-progress"):
                r = session.get(f"{wp}/{route}/{uid}/{course}")
                got += r.status_code in (200, 404)
            return got

        with ThreadPoolExecutor(ORIGINAL_THREADS) as pool:
            ok = sum(pool.map(learner, users))
        t_h5p = time.perf_counter() - t1
    assert ok == 3 * len(users), (ok, len(users))
    return {"total_s": time.perf_counter() - t0, "mooc_s": t_mooc, "h5p_s": t_h5p}


def _m1_items(page: dict[str, Any]) -> list[dict[str, Any]]:
    data = page.get("data")
    if isinstance(data, dict) and isinstance(data.get("enrollments"), list):
        return data["enrollments"]
    for key in ("data", "enrollments", "results"):
        if isinstance(page.get(key), list):
            return page[key]
    raise ValueError(f"unknown M1 envelope {sorted(page)}")


# ----------------------------------------------------------------------------------------- main


def floors(learners: int, pages: int, latency_s: float, concurrency: int) -> dict[str, float]:
    login = 3 * latency_s  # CSRF GET, login POST, users/me: a chain
    mooc = login + pages * latency_s + math.ceil(3 / 4) * latency_s
    h5p = 3 * learners * latency_s / concurrency
    return {"total_s": mooc + h5p, "mooc_s": mooc, "h5p_s": h5p}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.extract_latency")
    p.add_argument("--sizes", default="100,1000,5000", help="learners per course, comma-separated")
    p.add_argument("--latency-ms", type=float, default=20.0)
    p.add_argument("--in-thread", action="store_true", help="serve the simulator in-process")
    p.add_argument("--skip-original-above", type=int, default=10**9,
                   help="skip the (slow) original strategy for larger courses")  # fmt: skip
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    latency_s = args.latency_ms / 1000.0
    concurrency = H5PApiResource.model_fields["max_concurrency"].default
    results: list[dict[str, Any]] = []
    print(
        f"simulator: {'in-thread' if args.in_thread else 'subprocess'}, "
        f"latency {args.latency_ms:g} ms/call, H5P concurrency {concurrency} (ours) vs "
        f"{ORIGINAL_THREADS} threads (original); {os.cpu_count()} CPU(s)"
    )
    header = (
        f"{'learners':>8} {'calls':>6} {'floor s':>8} {'ours s':>8} {'x floor':>8} "
        f"{'h5p x fl':>8} {'orig s':>8} {'x floor':>8} {'speed-up':>8}"
    )
    print(header)
    for n in sizes:
        with simulator(n, args.latency_ms, args.in_thread) as root:
            course = course_id_of(root)
            run_ours(root, course)  # warm-up: imports, first connections (not measured)
            ours = run_ours(root, course)
            orig = run_original(root, course) if n <= args.skip_original_above else None
        fl = floors(ours["learners"], ours["pages"], latency_s, concurrency)
        row: dict[str, Any] = {
            "learners": ours["learners"],
            "calls": ours["mooc_requests"] + ours["h5p_requests"],
            "floor": fl,
            "ours": ours,
            "original": orig,
            "ours_over_floor": ours["total_s"] / fl["total_s"],
            "ours_h5p_over_floor": ours["h5p_s"] / fl["h5p_s"],
            "original_over_floor": orig["total_s"] / fl["total_s"] if orig else None,
            "speedup_vs_original": orig["total_s"] / ours["total_s"] if orig else None,
        }
        results.append(row)
        o = f"{orig['total_s']:8.2f} {row['original_over_floor']:8.2f} " if orig else " " * 18
        speed = f"{row['speedup_vs_original']:7.2f}x" if orig else ""
        print(
            f"{n:>8} {row['calls']:>6} {fl['total_s']:8.2f} {ours['total_s']:8.2f} "
            f"{row['ours_over_floor']:8.2f} {row['ours_h5p_over_floor']:8.2f} {o}{speed}"
        )
    target = next((r for r in results if r["learners"] == 1000), results[-1])
    verdict = "meets" if target["ours_over_floor"] <= 1.3 else "MISSES"
    print(
        f"\n{target['learners']} learners: ours {target['ours']['total_s']:.2f} s = "
        f"{target['ours_over_floor']:.2f}x the floor ({verdict} the 1.3x target)"
        + (
            f"; original {target['original']['total_s']:.2f} s "
            f"({target['speedup_vs_original']:.2f}x slower than ours)"
            if target["original"]
            else ""
        )
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "extract_latency",
        "latency_ms": args.latency_ms,
        "concurrency_ours": concurrency,
        "threads_original": ORIGINAL_THREADS,
        "simulator": "in-thread" if args.in_thread else "subprocess",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "results": results,
    }
    RESULTS.write_text(json.dumps(payload, indent=2) + "\n")
    shown = RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS
    print(f"written {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

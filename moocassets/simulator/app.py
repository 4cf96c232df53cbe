"""The ASGI app that serves a :class:`World` as both source systems (source-apis.md).

* MOOC (Open edX custom export API) under ``/api/custom/v1`` plus the login routes at the site root;
  every MOOC route except M3 needs a session cookie (``sessionid`` or ``edx-session``).
* H5P (WordPress plugin) under ``/wp-json/mooc/v1``; public. Course ids in H5P paths must be
  unencoded ``[a-zA-Z0-9_\\-:+]`` or percent-encoded; anything else is ``rest_no_route`` (404).
* Simulator controls under ``/__sim__/`` (no auth, not part of the real contract).
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import re
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, quote, unquote

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .faults import FaultConfig, Faults, Plan, system_of
from .world import (
    Course,
    Enrollment,
    World,
    from_epoch,
    h5p_time,
    iso_z,
)

MOOC_PREFIX = "/api/custom/v1"
H5P_PREFIX = "/wp-json/mooc/v1"
SIM_PREFIX = "/__sim__"
SESSION_TTL_S = 12 * 3600.0
OPERATOR_USER_ID = 4
H5P_COURSE_RE = re.compile(r"[a-zA-Z0-9_\-:+]+")
H5P_ROUTE_IDS = {"scores": "H1", "video-progress": "H2", "combined-progress": "H3",
                 "dashboard": "H4", "course-students": "H5"}

JSONDict = dict[str, Any]
Handler = Callable[[Request], Awaitable[Response]]


def _num(x: float, nd: int = 2) -> int | float:
    """Round, and drop the fraction when there is none (the sources mix 600 and 498.48)."""
    r = round(x, nd)
    return int(r) if r == int(r) else r


def _pct(part: float, whole: float) -> float:
    return round(100.0 * part / whole, 2) if whole else 0.0


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None
                  ) -> JSONResponse:
    return JSONResponse(payload, status_code=status, headers=headers)


def _no_data(what: str = "No data found") -> JSONResponse:
    return json_response({"code": "no_data", "message": what, "data": {"status": 404}}, 404)


def _no_route() -> JSONResponse:
    return json_response({"code": "rest_no_route",
                          "message": "No route was found matching the URL and request method.",
                          "data": {"status": 404}}, 404)


def _mooc_error(status: int, message: str) -> JSONResponse:
    return json_response({"success": False, "error": message, "detail": message}, status)


# ------------------------------------------------------------------------------------------------
# sessions


@dataclass
class Session:
    sid: str
    created: float  # simulated time
    static: bool = False
    requests: int = 0


class Auth:
    def __init__(self, world: World, email: str, password: str, session_ids: Iterable[str]) -> None:
        self.world = world
        self.email = email
        self.password = password
        self.sessions: dict[str, Session] = {}
        self.csrf_tokens: set[str] = set()
        self.user = {"id": OPERATOR_USER_ID, "username": email.split("@", 1)[0] or "operator",
                     "email": email, "full_name": "MOOC Data Operator"}
        for sid in session_ids:
            self.sessions[sid] = Session(sid, world.now_ts, static=True)

    def new_csrf(self) -> str:
        token = secrets.token_urlsafe(24)
        self.csrf_tokens.add(token)
        return token

    def new_session(self) -> Session:
        s = Session(secrets.token_hex(16), self.world.now_ts)
        self.sessions[s.sid] = s
        return s

    def check(self, request: Request, max_requests: int) -> Session | None:
        for name in ("sessionid", "edx-session"):
            sid = request.cookies.get(name)
            s = self.sessions.get(sid) if sid else None
            if s is None:
                continue
            if not s.static and self.world.now_ts - s.created >= SESSION_TTL_S:
                del self.sessions[s.sid]
                continue
            if max_requests and s.requests >= max_requests:
                del self.sessions[s.sid]
                continue
            s.requests += 1
            return s
        return None


# ------------------------------------------------------------------------------------------------
# stats


class Stats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.routes: Counter[str] = Counter()
        self.status: Counter[str] = Counter()
        self.by_route: dict[str, Counter[str]] = {}

    def record(self, route_id: str, status: int | str) -> None:
        key = str(status)
        self.routes[route_id] += 1
        self.status[key] += 1
        self.by_route.setdefault(route_id, Counter())[key] += 1

    def to_dict(self) -> JSONDict:
        return {"total": sum(self.routes.values()), "routes": dict(self.routes),
                "status": dict(self.status),
                "by_route": {k: dict(v) for k, v in self.by_route.items()}}


# ------------------------------------------------------------------------------------------------
# payloads (MOOC)


def _created(e: Enrollment, variant: str) -> str:
    d = from_epoch(e.created)
    base = d.strftime("%Y-%m-%dT%H:%M:%S")
    if variant == "frac":
        return f"{base}.{e.created_frac:06d}Z"
    if variant == "offset":
        return base + "+00:00"
    if variant == "naive":
        return base
    return base + "Z"


def _person_fields(e: Enrollment) -> JSONDict:
    p = e.person
    return {"user_id": p.user_id, "username": p.username, "email": p.email,
            "full_name": p.full_name}


class Payloads:
    """Builds every route's JSON from the world at ``now`` (variants resolved per course)."""

    def __init__(self, world: World, faults: Faults) -> None:
        self.world = world
        self.faults = faults

    def variant(self, course: Course, key: str) -> str:
        return self.faults.envelope(key, course.variants[key])

    # M1
    def enrollment_item(self, e: Enrollment, id_key: str, id_type: str, created: str) -> JSONDict:
        p = e.person
        uid: int | str = p.user_id if id_type == "int" else str(p.user_id)
        item: JSONDict = {id_key: uid, "username": p.username, "email": p.email,
                          "full_name": p.full_name, "enrollment_id": e.enrollment_id,
                          "mode": e.mode, "is_active": True, "created": _created(e, created),
                          "course_id": e.course.course_id}
        item["student_info"] = {
            "mssv": p.mssv, "first_name": p.first, "middle_name": p.middle, "last_name": p.last,
            "full_name_vn": p.full_name_vn, "class_code": p.class_code,
            "department": p.department, "faculty": p.faculty}
        item["all_attributes"] = [
            {"name": "gender", "value": p.gender},
            {"name": "year_of_birth", "value": str(p.year_of_birth)},
            {"name": "level_of_education", "value": "b"},
            {"name": "mssv", "value": p.mssv}]
        return item

    def m1(self, course: Course, offset: int, limit: int) -> JSONDict:
        rows = self.world.visible_enrollments(course.course_id)[offset:offset + limit]
        id_key = self.variant(course, "M1_id")
        id_type = self.variant(course, "M1_id_type")
        created = self.variant(course, "M1_created")
        page = [self.enrollment_item(e, id_key, id_type, created) for e in rows]
        env = self.variant(course, "M1")
        if env == "data.enrollments":
            return {"success": True, "data": {"course_id": course.course_id, "enrollments": page}}
        if env == "data":
            return {"success": True, "data": page}
        if env == "enrollments":
            return {"course_id": course.course_id, "enrollments": page}
        return {"results": page}

    def m2(self, course: Course) -> JSONDict:
        return {"success": True, "data": {
            "course_id": course.course_id, "display_name": course.display_name,
            "start": iso_z(course.start), "end": None if course.hide_end else iso_z(course.end)}}

    def m3(self) -> JSONDict:
        return {"data": [{"id": c.course_id, "display_name": c.display_name, "org": c.org,
                          "start": iso_z(c.start),
                          "end": None if c.hide_end else iso_z(c.end)}
                         for c in self.world.courses.values()]}

    def grade_row(self, course: Course, e: Enrollment, with_percent: bool) -> JSONDict:
        now = self.world.now_ts
        g = self.world.grade(e, now)
        passed = g >= self.world.config.pass_threshold * 100.0
        row = _person_fields(e)
        if with_percent:
            row["percent_grade"] = round(g / 100.0, 4)
        row["grade_percentage"] = g
        letters = self.variant(course, "M4_letters")
        if letters == "AF":
            row["letter_grade"] = ("A" if g >= 85 else "B" if g >= 70 else "C" if g >= 60
                                   else "D" if g >= 50 else "F")
        elif letters == "pass":
            row["letter_grade"] = "Pass" if passed else ""
        row["is_passed"] = passed
        if self.variant(course, "M4_fields") == "sparse" and e.user_id % 7 == 3:
            del row[("username", "email", "full_name")[e.user_id % 3]]
        return row

    def m4(self, course: Course, email_filter: str | None, sort_by: str | None,
           sort_order: str) -> JSONDict:
        env = self.variant(course, "M4")
        rows = [self.grade_row(course, e, env == "students")
                for e in self.world.visible_enrollments(course.course_id)]
        if email_filter:
            needle = email_filter.lower()
            rows = [r for r in rows if needle in str(r.get("email", "")).lower()]
        if sort_by == "grade_percentage":
            rows.sort(key=lambda r: r["grade_percentage"], reverse=sort_order == "desc")
        elif sort_by == "username":
            rows.sort(key=lambda r: str(r.get("username", "")), reverse=sort_order == "desc")
        if env == "students":
            return {"students": rows}
        n = len(rows)
        return {"grade_data": {"grade_table": rows},
                "summary": {"total_students": n,
                            "avg_grade": round(sum(r["grade_percentage"] for r in rows) / n, 1)
                            if n else 0.0,
                            "pass_rate": _pct(sum(1 for r in rows if r["is_passed"]), n)}}

    def progress_row(self, e: Enrollment, blocks_present: bool) -> JSONDict:
        now = self.world.now_ts
        done, total, label = self.world.progress(e, now)
        last = self.world.last_activity(e, now)
        row = _person_fields(e)
        chapter, section, unit = label or ("", "", "")
        row.update({"current_chapter": chapter, "current_section": section, "current_unit": unit,
                    "completion_rate": _pct(done, total)})
        if blocks_present:
            row["total_blocks"] = total
            row["completed_blocks"] = done
        row["last_activity"] = iso_z(last) if last is not None else None
        return row

    def m5(self, course: Course) -> JSONDict:
        present = self.variant(course, "M5_blocks") == "present"
        rows = [self.progress_row(e, present)
                for e in self.world.visible_enrollments(course.course_id)]
        if self.variant(course, "M5") == "students":
            return {"students": rows}
        n = len(rows)
        return {"students_progress_data": {"students_progress": rows},
                "summary": {"total_students": n, "avg_completion_rate":
                            round(sum(r["completion_rate"] for r in rows) / n, 2) if n else 0.0}}

    def discussion_row(self, e: Enrollment) -> JSONDict | None:
        f = self.world.forum(e, self.world.now_ts)
        if f is None:
            return None
        threads, comments, questions, upvotes = f
        row = _person_fields(e)
        row.update({"threads_count": threads, "comments_count": comments,
                    "total_interactions": threads + comments, "questions_count": questions,
                    "total_upvotes": upvotes})
        return row

    def m6(self, course: Course) -> JSONDict:
        visible = self.world.visible_enrollments(course.course_id)
        rows = [r for r in (self.discussion_row(e) for e in visible) if r is not None]
        return {"students": rows, "summary": {
            "total_students": len(visible),
            "total_threads": sum(r["threads_count"] for r in rows),
            "total_comments": sum(r["comments_count"] for r in rows)}}

    def m7(self, course: Course) -> JSONDict:
        rows: list[JSONDict] = []
        for e in self.world.visible_enrollments(course.course_id):
            row = self.grade_row(course, e, True)
            row.update(self.progress_row(e, True))
            row.update({"threads_count": 0, "comments_count": 0, "total_interactions": 0,
                        "questions_count": 0, "total_upvotes": 0})
            row.update(self.discussion_row(e) or {})
            row.update(_person_fields(e))
            rows.append(row)
        return {"success": True, "course_id": course.course_id, "students": rows,
                "summary": {"total_students": len(rows)}}

    def m8(self, course: Course) -> JSONDict:
        visible = self.world.visible_enrollments(course.course_id)
        rows = []
        for e in visible:
            row = _person_fields(e)
            row.update({"enrollment_id": e.enrollment_id, "mode": e.mode, "is_active": True,
                        "created": iso_z(e.created)})
            rows.append(row)
        return {"course_id": course.course_id, "students": rows,
                "summary": {"total_students": len(rows),
                            "modes": dict(Counter(e.mode for e in visible))}}

    # ---------------------------------------------------------------- H5P

    def _enrollment(self, course_id: str, user_id: int) -> Enrollment | None:
        c = self.world.courses.get(course_id)
        return c.by_user.get(user_id) if c is not None else None

    def h1(self, e: Enrollment) -> JSONDict | None:
        now = self.world.now_ts
        st = self.world.h5p_state(e, now)
        if not st.rows:
            return None
        rows = []
        for a, fin in st.rows:
            c = a.content
            score = a.score if fin else 0
            spent = a.time_spent if fin else min(a.time_spent, float(int(now - a.opened)))
            if e.flags:
                opened: int = 1
                finished: int = 1 if fin else 0
            else:
                opened = int(a.opened)
                finished = int(a.finished) if fin and a.finished is not None else 0
            rows.append({"id": a.row_id, "content_id": c.content_id, "score": score,
                         "max_score": c.max_score, "opened": opened, "finished": finished,
                         "time": _num(spent), "content_title": c.title,
                         "percentage": _pct(score, c.max_score), "folder_id": c.folder.folder_id,
                         "folder_name": c.folder.name,
                         "total_contents_in_folder": c.folder.n_contents})
        total_score = sum(r["score"] for r in rows)
        total_max = sum(r["max_score"] for r in rows)
        return {"user_id": str(e.user_id), "course_id": e.course.course_id,
                "summary": {"total_contents": len(rows),
                            "completed_contents": sum(1 for _, f in st.rows if f),
                            "total_score": total_score, "total_max_score": total_max,
                            "overall_percentage": _pct(total_score, total_max),
                            "total_time_spent": _num(sum(r["time"] for r in rows))},
                "scores": rows}

    def _video_rows(self, e: Enrollment) -> list[JSONDict]:
        rows = []
        for w, f in self.world.watches_at(e, self.world.now_ts):
            v = w.video
            status = ("completed" if f >= 0.95 else "not_started" if f <= 0.0
                      else "started" if f < 0.25 else "in_progress")
            rows.append({"id": w.row_id, "content_id": v.content_id, "content_title": v.title,
                         "progress_percent": _num(100.0 * f), "current_time": _num(v.duration * f),
                         "duration": _num(v.duration), "status": status,
                         "folder_id": v.folder.folder_id, "folder_name": v.folder.name,
                         "total_contents_in_folder": v.folder.n_videos})
        return rows

    @staticmethod
    def _video_summary(rows: list[JSONDict]) -> JSONDict:
        dur = sum(r["duration"] for r in rows)
        watched = sum(r["current_time"] for r in rows)
        return {"total_videos": len(rows),
                "completed_videos": sum(1 for r in rows if r["status"] == "completed"),
                "in_progress_videos": sum(1 for r in rows
                                          if r["status"] in ("in_progress", "started")),
                "not_started_videos": sum(1 for r in rows if r["status"] == "not_started"),
                "total_duration": _num(dur), "total_watched_time": _num(watched),
                "overall_progress": _pct(watched, dur),
                "average_progress": round(sum(r["progress_percent"] for r in rows) / len(rows), 2)
                if rows else 0.0}

    def h2(self, e: Enrollment) -> JSONDict | None:
        rows = self._video_rows(e)
        if not rows:
            return None
        s = self._video_summary(rows)
        s.pop("average_progress")
        return {"user_id": str(e.user_id), "course_id": e.course.course_id, "summary": s,
                "video_progress": rows}

    def _combined(self, e: Enrollment) -> tuple[JSONDict, JSONDict, JSONDict] | None:
        h = self.h1(e)
        vrows = self._video_rows(e)
        if h is None and not vrows:
            return None
        hs = h["summary"] if h else {"total_contents": 0, "completed_contents": 0,
                                     "total_score": 0, "total_max_score": 0,
                                     "overall_percentage": 0.0, "total_time_spent": 0}
        vs = self._video_summary(vrows)
        total = hs["total_contents"] + vs["total_videos"]
        done = hs["completed_contents"] + vs["completed_videos"]
        overall = {"total_items": total, "completed_items": done,
                   "overall_completion": _pct(done, total),
                   "total_contents_in_course_folders": len(e.course.contents)}
        return overall, hs, vs

    def h3(self, e: Enrollment) -> JSONDict | None:
        parts = self._combined(e)
        if parts is None:
            return None
        overall, hs, vs = parts
        return {"user_id": str(e.user_id), "course_id": e.course.course_id, "overall": overall,
                "video_progress": {k: vs[k] for k in (
                    "total_videos", "completed_videos", "in_progress_videos",
                    "not_started_videos", "average_progress", "total_duration",
                    "total_watched_time")},
                "scores": {"total_contents": hs["total_contents"],
                           "completed_contents": hs["completed_contents"],
                           "pending_contents": hs["total_contents"] - hs["completed_contents"],
                           "total_score": hs["total_score"],
                           "total_max_score": hs["total_max_score"],
                           "average_percentage": hs["overall_percentage"],
                           "total_time_spent": hs["total_time_spent"]}}

    def h4(self, e: Enrollment) -> JSONDict | None:
        parts = self._combined(e)
        if parts is None:
            return None
        overall, hs, vs = parts
        now = self.world.now_ts
        st = self.world.h5p_state(e, now)
        folders: dict[int, list[tuple[int, int, bool]]] = {}
        events: list[tuple[float, JSONDict]] = []
        for a, fin in st.rows:
            folders.setdefault(a.content.folder.folder_id, []).append(
                (a.score if fin else 0, a.content.max_score, fin))
            when = a.finished if fin and a.finished is not None else a.opened
            events.append((when, {"type": "h5p", "content_id": a.content.content_id,
                                  "title": a.content.title,
                                  "action": "completed" if fin else "opened",
                                  "score": a.score if fin else 0,
                                  "max_score": a.content.max_score,
                                  "timestamp": h5p_time(when)}))
        for w, f in self.world.watches_at(e, now):
            when = min(now, w.end)
            events.append((when, {"type": "video", "content_id": w.video.content_id,
                                  "title": w.video.title, "action": "watched",
                                  "progress": round(100.0 * f, 2),
                                  "timestamp": h5p_time(when)}))
        events.sort(key=lambda t: t[0], reverse=True)
        folder_pcts = [_pct(sum(s for s, _, _ in v), sum(m for _, m, _ in v))
                       for v in folders.values()]
        top = sorted(((a.score / a.content.max_score, a) for a, fin in st.rows
                      if fin and a.finished is not None and a.content.max_score),
                     key=lambda t: (-t[0], t[1].finished or 0))[:3]
        return {
            "user_id": str(e.user_id), "course_id": e.course.course_id,
            "overview": {"overall_completion": overall["overall_completion"],
                         "total_items": overall["total_items"],
                         "completed_items": overall["completed_items"],
                         "items_to_complete": overall["total_items"] - overall["completed_items"]},
            "h5p_stats": {"total_contents": hs["total_contents"],
                          "completed_contents": hs["completed_contents"],
                          "total_score": hs["total_score"],
                          "total_max_score": hs["total_max_score"],
                          "average_percentage": hs["overall_percentage"],
                          "total_time_spent": hs["total_time_spent"]},
            "folder_scores_stats": {
                "total_folders": len(folders),
                "completed_folders": sum(1 for v in folders.values() if all(f for *_, f in v)),
                "average_folder_percentage": round(sum(folder_pcts) / len(folder_pcts), 2)
                if folder_pcts else 0.0},
            "video_stats": {"total_videos": vs["total_videos"],
                            "completed_videos": vs["completed_videos"],
                            "in_progress_videos": vs["in_progress_videos"],
                            "average_video_progress": vs["average_progress"]},
            "recent_activities": [ev for _, ev in events[:5]],
            "top_achievements": [{"content_id": a.content.content_id, "title": a.content.title,
                                  "percentage": round(100.0 * p, 2),
                                  "completed_at": h5p_time(a.finished or a.opened)}
                                 for p, a in top],
        }

    def h5(self, course: Course) -> JSONDict:
        now = self.world.now_ts
        n_contents = len(course.contents)
        n_videos = len(course.videos)
        max_score = course.total_max_score
        students = []
        for e in self.world.visible_enrollments(course.course_id):
            st = self.world.h5p_state(e, now)
            watches = self.world.watches_at(e, now)
            if not st.rows and not watches:
                continue
            p = e.person
            students.append({
                "user_id": str(p.user_id), "username": p.username, "email": p.email,
                "full_name": p.full_name,
                "h5p_completed_items": st.completed_contents,
                "h5p_attempted_items": st.total_contents,
                "h5p_total_items_in_course": n_contents,
                "h5p_total_contents": n_contents,
                "h5p_completed_videos": sum(1 for _, f in watches if f >= 0.95),
                "h5p_opened_videos": len(watches),
                "h5p_total_videos_in_course": n_videos,
                "h5p_average_video_progress":
                    round(100.0 * sum(f for _, f in watches) / n_videos, 2) if n_videos else 0.0,
                "h5p_total_score": st.total_score, "h5p_course_max_score": max_score})
        return {"course_id": course.course_id, "students": students}


# ------------------------------------------------------------------------------------------------
# fault application


async def _sleep(seconds: float) -> None:
    if seconds > 0:
        await asyncio.sleep(seconds)


def _error_response(plan: Plan, system: str) -> Response:
    status = plan.status
    if status == 503:
        return Response("<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>",
                        503, headers={"Retry-After": str(plan.retry_after or 1)},
                        media_type="text/html")
    if status == 502:
        return Response("<html><head><title>502 Bad Gateway</title></head><body><center>"
                        "<h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>",
                        502, media_type="text/html")
    if system == "h5p":
        return json_response({"code": "internal_server_error",
                              "message": "There has been a critical error on this website.",
                              "data": {"status": 500}}, 500)
    return Response("<h1>Server Error (500)</h1>", 500, media_type="text/html")


def _throttled(plan: Plan, system: str) -> Response:
    wait = plan.retry_after or 1
    body: JSONDict = (
        {"code": "rest_too_many_requests", "message": "Too many requests.",
         "data": {"status": 429}} if system == "h5p" else
        {"detail": f"Request was throttled. Expected available in {wait} seconds."})
    return json_response(body, 429, headers={"Retry-After": str(wait)})


def _break_body(resp: Response, kind: str, system: str) -> Response:
    body = bytes(resp.body)
    headers = {k: v for k, v in resp.headers.items() if k.lower() != "content-length"}
    if kind == "truncated":
        cut = body[: max(1, len(body) // 2)]
        headers["content-length"] = str(len(body))  # promises more than it sends
        return Response(cut, resp.status_code, headers=headers)
    if system == "h5p":  # a PHP notice printed before the JSON
        broken = (b"<br />\n<b>Warning</b>:  Undefined array key \"folder_id\" in "
                  b"<b>/var/www/html/wp-content/plugins/h5p-management/api.php</b> on line "
                  b"<b>212</b><br />\n" + body)
    else:  # a Python repr instead of JSON
        try:
            broken = repr(json.loads(body)).encode()
        except ValueError:
            broken = b"{" + body
    return Response(broken, resp.status_code, headers=headers)


# ------------------------------------------------------------------------------------------------


def _int_param(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    value = int(raw)
    if value < 0:
        raise ValueError(name)
    return value


def create_app(
    world: World,
    *,
    mooc_email: str,
    mooc_password: str,
    session_ids: Iterable[str] = (),
    faults: Faults | FaultConfig | None = None,
) -> Starlette:
    """The simulator as one ASGI app.

    ``app.state`` exposes ``world``, ``faults`` (:class:`Faults`), ``auth`` and ``stats``.
    ``session_ids`` are operator session cookies that are valid from the start (never expire by
    time; the ``session_max_requests`` fault still applies).
    """
    if not mooc_password:
        raise ValueError("mooc_password must not be empty")
    fault_obj = faults if isinstance(faults, Faults) else Faults(faults)
    auth = Auth(world, mooc_email, mooc_password, session_ids)
    stats = Stats()
    payloads = Payloads(world, fault_obj)

    def api(route_id: str, *, needs_session: bool) -> Callable[[Handler], Handler]:
        system = system_of(route_id)

        def deco(fn: Handler) -> Handler:
            async def endpoint(request: Request) -> Response:
                resp = await _serve(request, fn)
                if not getattr(request.state, "recorded", False):
                    stats.record(getattr(request.state, "route_id", route_id), resp.status_code)
                return resp

            async def _serve(request: Request, fn: Handler) -> Response:
                rid = getattr(request.state, "route_id", route_id)
                plan = fault_obj.plan(rid)
                await _sleep(plan.delay_s)
                if plan.outcome == "rate_limited":
                    return _throttled(plan, system)
                if plan.outcome == "timeout":
                    stats.record(rid, "timeout")  # now: the client usually gives up first
                    request.state.recorded = True
                    await _hang(request, fault_obj.config.timeout_s)
                    return Response("", 504)
                if plan.outcome == "error":
                    return _error_response(plan, system)
                await _sleep(plan.export_delay_s)
                if needs_session and auth.check(
                        request, fault_obj.config.session_max_requests) is None:
                    return json_response(
                        {"detail": "Authentication credentials were not provided."}, 401)
                try:
                    with world.lock:
                        resp = await fn(request)
                except ValueError as exc:
                    resp = _mooc_error(400, f"invalid parameter: {exc}")
                if plan.body_fault and resp.status_code == 200:
                    resp = _break_body(resp, plan.body_fault, system)
                return resp

            endpoint.__name__ = fn.__name__
            return endpoint

        return deco

    async def _hang(request: Request, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await asyncio.sleep(min(0.25, max(0.0, deadline - time.monotonic())))
            if await request.is_disconnected():
                return

    # ---------------------------------------------------------------- login

    def _root(request: Request) -> str:
        return f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"

    @api("CSRF", needs_session=False)
    async def csrf_token(request: Request) -> Response:
        token = auth.new_csrf()
        resp = json_response({"csrfToken": token})
        resp.set_cookie("csrftoken", token, path="/", samesite="lax")
        return resp

    @api("LOGIN", needs_session=False)
    async def login(request: Request) -> Response:
        header = request.headers.get("x-csrftoken", "")
        cookie = request.cookies.get("csrftoken", "")
        root = _root(request)
        origin = request.headers.get("origin")
        referer = request.headers.get("referer", "")
        if not header or header != cookie or header not in auth.csrf_tokens:
            return json_response({"detail": "CSRF Failed: CSRF token missing or incorrect."}, 403)
        if origin != root or not referer.startswith(root + "/"):
            return json_response({"detail": "CSRF Failed: Referer/Origin checking failed."}, 403)
        ctype = request.headers.get("content-type", "")
        if not ctype.startswith("application/x-www-form-urlencoded"):
            return json_response({"success": False, "value": "Form-encoded data is required.",
                                  "error_code": "invalid-request"}, 400)
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        email = (form.get("email") or [""])[0]
        password = (form.get("password") or [""])[0]
        if not (email.lower() == auth.email.lower()
                and hmac.compare_digest(password.encode(), auth.password.encode())):
            return json_response({"success": False, "value": "Email or password is incorrect.",
                                  "error_code": "incorrect-email-or-password"}, 403)
        s = auth.new_session()
        resp = json_response({"success": True, "redirect_url": "/dashboard"})
        claims = base64.urlsafe_b64encode(json.dumps(
            {"user_id": OPERATOR_USER_ID, "email": auth.email,
             "exp": int(world.now_ts + SESSION_TTL_S)}).encode()).decode().rstrip("=")
        new_csrf = auth.new_csrf()
        resp.set_cookie("sessionid", s.sid, path="/", httponly=True, samesite="lax")
        resp.set_cookie("csrftoken", new_csrf, path="/", samesite="lax")
        resp.set_cookie("edx-jwt-cookie-header-payload", "eyJhbGciOiJSUzUxMiJ9." + claims,
                        path="/")
        resp.set_cookie("edx-jwt-cookie-signature", secrets.token_urlsafe(32), path="/",
                        httponly=True)
        resp.set_cookie("edxloggedin", "true", path="/")
        return resp

    # ---------------------------------------------------------------- MOOC

    def _course_from_path(request: Request) -> Course | None:
        return world.courses.get(request.path_params["course"])

    def _not_found() -> JSONResponse:
        return _mooc_error(404, "Course not found")

    @api("M1", needs_session=True)
    async def m1(request: Request) -> Response:
        c = _course_from_path(request)
        if c is None:
            return _not_found()
        offset = _int_param(request, "offset", 0)
        limit = _int_param(request, "limit", 200)
        if limit == 0:
            raise ValueError("limit")
        return json_response(payloads.m1(c, offset, limit))

    @api("M2", needs_session=True)
    async def m2(request: Request) -> Response:
        cid = request.query_params.get("course_id")
        if not cid:
            return _mooc_error(400, "course_id is required")
        c = world.courses.get(cid)
        return _not_found() if c is None else json_response(payloads.m2(c))

    @api("M3", needs_session=False)
    async def m3(request: Request) -> Response:
        return json_response(payloads.m3())

    def _export(build: Callable[[Course, Request], JSONDict]) -> Handler:
        async def handler(request: Request) -> Response:
            c = _course_from_path(request)
            return _not_found() if c is None else json_response(build(c, request))
        return handler

    m4 = api("M4", needs_session=True)(_export(lambda c, r: payloads.m4(
        c, r.query_params.get("email_filter"), r.query_params.get("sort_by"),
        r.query_params.get("sort_order", "asc"))))
    m5 = api("M5", needs_session=True)(_export(lambda c, r: payloads.m5(c)))
    m6 = api("M6", needs_session=True)(_export(lambda c, r: payloads.m6(c)))
    m7 = api("M7", needs_session=True)(_export(lambda c, r: payloads.m7(c)))
    m8 = api("M8", needs_session=True)(_export(lambda c, r: payloads.m8(c)))

    @api("M12", needs_session=True)
    async def me(request: Request) -> Response:
        return json_response({"success": True, "data": dict(auth.user)})

    # ---------------------------------------------------------------- H5P

    def _h5p_target(request: Request) -> tuple[str, list[str]] | None:
        """(route id, [user_id?, course_id]) from the raw path, or None if no route matches."""
        raw = request.scope.get("raw_path")
        path = raw.decode("latin-1") if raw else quote(request.url.path)
        path = path.split("?", 1)[0]
        rest = path[len(H5P_PREFIX):].strip("/")
        parts = rest.split("/")
        route_id = H5P_ROUTE_IDS.get(parts[0])
        want = 2 if route_id == "H5" else 3
        if route_id is None or len(parts) != want:
            return None
        if route_id != "H5" and not parts[1].isdigit():
            return None
        seg = parts[-1]
        if "%" in seg:
            course_id = unquote(seg)
        elif H5P_COURSE_RE.fullmatch(seg):
            course_id = seg
        else:
            return None
        return route_id, [*parts[1:-1], course_id]

    h5p_builders: dict[str, Callable[[Enrollment], JSONDict | None]] = {
        "H1": payloads.h1, "H2": payloads.h2, "H3": payloads.h3, "H4": payloads.h4}

    async def h5p_dispatch(request: Request) -> Response:
        first = request.url.path[len(H5P_PREFIX):].strip("/").split("/", 1)[0]
        request.state.route_id = H5P_ROUTE_IDS.get(first, "H?")
        return await _h5p_endpoint(request)

    @api("H?", needs_session=False)
    async def _h5p_endpoint(request: Request) -> Response:
        target = _h5p_target(request)
        if target is None:
            return _no_route()
        route_id, args = target
        if route_id == "H5":
            c = world.courses.get(args[0])
            return _no_data("No course data") if c is None else json_response(payloads.h5(c))
        e = payloads._enrollment(args[1], int(args[0]))
        if e is None:
            return _no_data()
        body = h5p_builders[route_id](e)
        if body is None:
            what = "No video progress" if route_id == "H2" else "No H5P data for this user"
            return _no_data(what)
        return json_response(body)

    # ---------------------------------------------------------------- admin

    async def _json_body(request: Request) -> JSONDict:
        raw = await request.body()
        if not raw:
            return {}
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("JSON object expected")
        return data

    def _admin(fn: Handler) -> Handler:
        async def wrapped(request: Request) -> Response:
            try:
                return await fn(request)
            except (ValueError, TypeError) as exc:
                return json_response({"error": str(exc)}, 400)
            except KeyError as exc:
                return json_response({"error": f"not found: {exc}"}, 404)
        wrapped.__name__ = fn.__name__
        return wrapped

    @_admin
    async def sim_clock(request: Request) -> Response:
        if request.method == "POST":
            body = await _json_body(request)
            if "set" in body or "now" in body:
                dt = datetime.fromisoformat(str(body.get("set") or body.get("now")))
                world.set_now(dt)
            delta = float(body.get("advance_seconds", 0)) + float(body.get("seconds", 0))
            delta += float(body.get("advance_days", 0) or body.get("days", 0)) * 86400.0
            if delta:
                world.advance(timedelta(seconds=delta))
        return json_response({"now": world.now.isoformat().replace("+00:00", "Z"),
                              "epoch": world.now_ts})

    @_admin
    async def sim_enroll(request: Request) -> Response:
        body = await _json_body(request)
        ids = world.enroll(str(body["course_id"]), int(body.get("count", 1)))
        return json_response({"course_id": body["course_id"], "user_ids": ids})

    @_admin
    async def sim_unenroll(request: Request) -> Response:
        body = await _json_body(request)
        uids = body.get("user_ids") or [body["user_id"]]
        removed = [int(u) for u in uids if world.unenroll(str(body["course_id"]), int(u))]
        return json_response({"course_id": body["course_id"], "removed": removed})

    @_admin
    async def sim_courses(request: Request) -> Response:
        if request.method == "POST":
            body = await _json_body(request)
            start = body.get("start")
            cid = world.add_course(
                body.get("course_id"), display_name=body.get("display_name"),
                start=datetime.fromisoformat(start) if start else None,
                weeks=int(body["weeks"]) if body.get("weeks") else None,
                learners=int(body["learners"]) if body.get("learners") is not None else None,
                h5p_contents=int(body["h5p_contents"]) if body.get("h5p_contents") else None,
                videos=int(body["videos"]) if body.get("videos") else None,
                hide_end=bool(body.get("hide_end", False)))
            return json_response({"course_id": cid}, 201)
        return json_response({"courses": world.describe()})

    @_admin
    async def sim_outcomes(request: Request) -> Response:
        raw = request.scope.get("raw_path") or b""
        seg = raw.decode("latin-1").split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        cid = unquote(seg) if seg else request.path_params["course"]
        days = _int_param(request, "inactivity_days", 21)
        return json_response({"course_id": cid, "status": world.status(cid),
                              "outcomes": world.outcomes(cid, days)})

    @_admin
    async def sim_faults(request: Request) -> Response:
        if request.method == "POST":
            body = await _json_body(request)
            if body.pop("reset", False):
                fault_obj.reset()
            if body:
                fault_obj.update(**body)
        return json_response(fault_obj.config.to_dict())

    @_admin
    async def sim_stats(request: Request) -> Response:
        out = stats.to_dict()
        if request.method == "POST":
            stats.reset()
        return json_response(out)

    @_admin
    async def sim_health(request: Request) -> Response:
        return json_response({"status": "ok", "now": world.now.isoformat(),
                              "courses": len(world.courses), "sessions": len(auth.sessions)})

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        stats.record("other", status)
        if request.url.path.startswith(H5P_PREFIX):
            return _no_route()
        return json_response({"detail": "Not found."}, status)

    course = "{course}"
    routes = [
        Route("/csrf/api/v1/token", csrf_token, methods=["GET"]),
        Route("/api/user/v1/account/login_session/", login, methods=["POST"]),
        Route(f"{MOOC_PREFIX}/course-enrollments-attributes/{course}/", m1, methods=["GET"]),
        Route(f"{MOOC_PREFIX}/course-details/display-name/", m2, methods=["GET"]),
        Route(f"{MOOC_PREFIX}/course-details/all/", m3, methods=["GET"]),
        Route(f"{MOOC_PREFIX}/export/student-grades/{course}/", m4, methods=["GET"]),
        Route(f"{MOOC_PREFIX}/export/student-progress/{course}/", m5, methods=["GET"]),
        Route(f"{MOOC_PREFIX}/export/student-discussions/{course}/", m6, methods=["GET"]),
        Route(f"{MOOC_PREFIX}/export/complete-student-data/{course}/", m7, methods=["GET"]),
        Route(f"{MOOC_PREFIX}/export/student-enrollments/{course}/", m8, methods=["GET"]),
        Route(f"{MOOC_PREFIX}/users/me/", me, methods=["GET"]),
        Route(H5P_PREFIX + "/{rest:path}", h5p_dispatch, methods=["GET"]),
        Route(f"{SIM_PREFIX}/clock", sim_clock, methods=["GET", "POST"]),
        Route(f"{SIM_PREFIX}/enroll", sim_enroll, methods=["POST"]),
        Route(f"{SIM_PREFIX}/unenroll", sim_unenroll, methods=["POST"]),
        Route(f"{SIM_PREFIX}/courses", sim_courses, methods=["GET", "POST"]),
        Route(SIM_PREFIX + "/outcomes/{course:path}", sim_outcomes, methods=["GET"]),
        Route(f"{SIM_PREFIX}/faults", sim_faults, methods=["GET", "POST"]),
        Route(f"{SIM_PREFIX}/stats", sim_stats, methods=["GET", "POST"]),
        Route(f"{SIM_PREFIX}/health", sim_health, methods=["GET"]),
    ]
    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})
    app.state.world = world
    app.state.faults = fault_obj
    app.state.auth = auth
    app.state.stats = stats
    return app

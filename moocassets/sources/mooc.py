"""Client of the Open edX custom export API (endpoints M1-M8, M12 of docs/source-apis §4).

Auth (§2): an operator-supplied session cookie (sent as ``sessionid`` and ``edx-session``), or the
CSRF + form login flow with email/password. On 401/403 from an API call the client logs in again
once for that call (only with email/password) and retries it. The login POST is never retried.

Course ids are percent-encoded with nothing safe, in paths and query strings; paths end with ``/``.
Methods return raw row dicts; normalisation lives in ``moocassets.transforms.payloads``.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

import httpx
from pydantic import Field

from moocassets.sources.errors import (
    SourceAuthError,
    SourcePayloadError,
    SourceUnavailableError,
)
from moocassets.sources.http import (
    Engine,
    Fetched,
    FetchStats,
    HttpSourceResource,
    LoggerLike,
    Request,
)
from moocassets.sources.redaction import register_secret

API_SUFFIX = "/api/custom/v1"
CSRF_PATH = "/csrf/api/v1/token"
LOGIN_PATH = "/api/user/v1/account/login_session/"
ME_PATH = "/users/me/"
SESSION_COOKIES = ("sessionid", "edx-session")
_SECRET_COOKIE_PREFIXES = ("sessionid", "edx-session", "csrftoken", "edx-jwt-cookie", "edx-user")

# Where the rows are, per endpoint, in the order tried (docs/source-apis §4).
M1_ENVELOPES: tuple[tuple[str, ...], ...] = (
    ("data", "enrollments"),
    ("data",),
    ("enrollments",),
    ("results",),
)
M3_ENVELOPES: tuple[tuple[str, ...], ...] = (("data",), ("results",))
M4_ENVELOPES: tuple[tuple[str, ...], ...] = (("students",), ("grade_data", "grade_table"))
M5_ENVELOPES: tuple[tuple[str, ...], ...] = (
    ("students",),
    ("students_progress_data", "students_progress"),
)
M6_ENVELOPES: tuple[tuple[str, ...], ...] = (("students",),)


def encode_course(course_id: str) -> str:
    """``course-v1:A+B+C`` -> ``course-v1%3AA%2BB%2BC`` (nothing safe)."""
    return quote(course_id, safe="")


def site_root(base_url: str) -> str:
    """The site root: the API base without ``/api/custom/v1`` (else scheme://host[:port])."""
    base = base_url.rstrip("/")
    if base.endswith(API_SUFFIX):
        return base[: -len(API_SUFFIX)]
    parts = urlsplit(base)
    return f"{parts.scheme}://{parts.netloc}"


def _cookie_values(jar: httpx.Cookies, name: str) -> list[str]:
    return [c.value for c in jar.jar if c.name == name and c.value]


def _register_cookie_secrets(jar: httpx.Cookies) -> None:
    for cookie in jar.jar:
        if cookie.name.lower().startswith(_SECRET_COOKIE_PREFIXES) and cookie.value:
            register_secret(cookie.value)


class MoocAuth:
    """Session state of one MOOC client (lives on the session's event loop)."""

    def __init__(
        self,
        *,
        root: str,
        api: str,
        email: str | None,
        password: str | None,
        sessionid: str | None,
        login_timeout_s: float,
    ) -> None:
        self.root, self.api = root, api
        self.email, self._password = email, password
        self.has_operator_session = bool(sessionid)
        self.generation = 0
        self.logged_in = bool(sessionid)
        self.logins = 0
        self._login_timeout_s = login_timeout_s
        self._lock = asyncio.Lock()

    @property
    def can_login(self) -> bool:
        return bool(self.email and self._password)

    async def ensure(self, engine: Engine, stats: FetchStats) -> None:
        if self.logged_in:
            return
        async with self._lock:
            if self.logged_in:
                return
            if not self.can_login:
                raise SourceAuthError(
                    system="MOOC",
                    endpoint="auth",
                    detail="no sessionid and no email/password configured",
                )
            await self._login(engine, stats)

    async def renew(self, engine: Engine, stats: FetchStats, seen_generation: int) -> None:
        async with self._lock:
            if self.generation != seen_generation:
                return  # another call already logged in again since this one was sent
            if not self.can_login:
                raise SourceAuthError(
                    system="MOOC",
                    endpoint="auth",
                    status=None,
                    detail="the session was rejected (expired sessionid?) and no email/password "
                    "is configured to log in again; supply a fresh sessionid or credentials",
                )
            await self._login(engine, stats)

    async def _login(self, engine: Engine, stats: FetchStats) -> None:
        client = engine.client
        for name in (*SESSION_COOKIES, "csrftoken"):
            client.cookies.delete(name)
        # 1. CSRF token (a GET: retried like any other)
        token_ans = await engine.get_json(
            Request(
                url=self.root + CSRF_PATH,
                endpoint=f"login GET {CSRF_PATH}",
                passthrough=frozenset(),
                auth=False,
            ),
            stats,
        )
        tokens = _cookie_values(client.cookies, "csrftoken")
        body = token_ans.json if isinstance(token_ans.json, dict) else {}
        token = tokens[-1] if tokens else body.get("csrfToken")
        if not token:
            raise SourceAuthError(
                system="MOOC",
                endpoint=f"login GET {CSRF_PATH}",
                status=token_ans.status,
                detail="no csrftoken cookie and no csrfToken field in the answer",
            )
        register_secret(str(token))
        # 2. the form login (a POST: never retried)
        endpoint = f"login POST {LOGIN_PATH}"
        stats.requests += 1
        try:
            resp = await client.post(
                self.root + LOGIN_PATH,
                data={"email": self.email or "", "password": self._password or ""},
                headers={
                    "X-CSRFToken": str(token),
                    "Referer": f"{self.root}/login",
                    "Origin": self.root,
                },
                timeout=httpx.Timeout(self._login_timeout_s, connect=self._login_timeout_s),
            )
        except httpx.HTTPError as exc:
            stats.errors += 1
            raise SourceUnavailableError(
                system="MOOC",
                endpoint=endpoint,
                attempts=1,
                detail=f"{type(exc).__name__}: {exc} (the login POST is not retried)",
            ) from None
        success_flag = True
        try:
            answer = resp.json()
            if isinstance(answer, dict) and answer.get("success") is False:
                success_flag = False
        except ValueError:
            answer = None
        if resp.status_code in (400, 401, 403) or (resp.status_code == 200 and not success_flag):
            stats.errors += 1
            raise SourceAuthError(
                system="MOOC",
                endpoint=endpoint,
                status=resp.status_code,
                attempts=1,
                detail=f"MOOC login refused for {self.email}: wrong email/password, or the CSRF "
                "token was rejected",
            )
        if not 200 <= resp.status_code < 300:
            stats.errors += 1
            raise SourceUnavailableError(
                system="MOOC",
                endpoint=endpoint,
                status=resp.status_code,
                attempts=1,
                detail=f"unexpected answer to the login (not retried): {resp.text[:200]}",
            )
        _register_cookie_secrets(client.cookies)
        # 3. verify the session
        try:
            me = await engine.get_json(
                Request(
                    url=self.api + ME_PATH,
                    endpoint=f"M12 GET {ME_PATH}",
                    passthrough=frozenset(),
                    auth=False,
                ),
                stats,
            )
        except SourceAuthError as exc:
            raise SourceAuthError(
                system="MOOC",
                endpoint=f"M12 GET {ME_PATH}",
                status=exc.status,
                attempts=exc.attempts,
                detail=f"the login for {self.email} was accepted but the session check "
                "rejected the new session (cookies not set or not accepted?)",
            ) from None
        if not isinstance(me.json, dict) or me.json.get("success") is False:
            raise SourceAuthError(
                system="MOOC",
                endpoint=f"M12 GET {ME_PATH}",
                status=me.status,
                detail=f"login for {self.email} returned 200 but the session check failed",
            )
        self.logins += 1
        self.generation += 1
        self.logged_in = True
        engine.log.info(f"MOOC: logged in as {self.email} (login #{self.logins})")


class MoocApiResource(HttpSourceResource):
    """Open edX custom export API. ``base_url`` like ``https://mooc.example.edu/api/custom/v1``.

    Secrets (``sessionid``, ``password``) should be set with ``dg.EnvVar``. Use ``log=`` on any
    method to route its log lines (retries, re-logins) to e.g. an asset's ``context.log``.
    """

    SYSTEM: ClassVar[str] = "MOOC"

    sessionid: str | None = Field(default=None, description="operator session cookie (secret)")
    email: str | None = Field(default=None, description="login e-mail (when no sessionid)")
    password: str | None = Field(default=None, description="login password (secret)")
    export_timeout_seconds: float = Field(default=600.0, description="read timeout of export/*")
    max_concurrency: int = Field(default=4, description="max requests in flight (adaptive)")
    call_budget_seconds: float = Field(default=900.0, description="total time budget per call")
    page_size: int = Field(default=200, description="M1 page size (limit)")

    def _make_engine(self) -> Engine:
        register_secret(self.password)
        register_secret(self.sessionid)
        root = site_root(self.base_url)
        auth = MoocAuth(
            root=root,
            api=self.base_url.rstrip("/"),
            email=self.email,
            password=self.password,
            sessionid=self.sessionid,
            login_timeout_s=self.timeout_seconds,
        )
        cookies = {name: self.sessionid for name in SESSION_COOKIES} if self.sessionid else None
        return Engine(
            self._policy(),
            log=self.safe_log,
            cookies=cookies,
            transport=self.transport(),
            sleep=self.sleeper(),
            auth=auth,
        )

    # -- plumbing ---------------------------------------------------------------------------
    async def _get(
        self,
        engine: Engine,
        stats: FetchStats,
        eid: str,
        path: str,
        course_id: str | None,
        *,
        export: bool = False,
    ) -> tuple[str, Any]:
        endpoint = f"{eid} GET {path}"
        ans = await engine.get_json(
            Request(
                url=self._api_url(path),
                endpoint=endpoint,
                course_id=course_id,
                read_timeout_s=self.export_timeout_seconds if export else None,
                passthrough=frozenset(),
            ),
            stats,
        )
        payload = ans.json
        if isinstance(payload, dict) and payload.get("success") is False:
            msg = payload.get("message") or payload.get("error") or payload.get("detail") or ""
            raise SourcePayloadError(
                system=self.SYSTEM,
                endpoint=endpoint,
                course_id=course_id,
                status=ans.status,
                detail=f"the server answered success=false: {str(msg)[:200]}",
            )
        return endpoint, payload

    def _unwrap(
        self,
        payload: Any,
        envelopes: tuple[tuple[str, ...], ...],
        endpoint: str,
        course_id: str | None,
    ) -> list[Any]:
        """The row list at the first envelope that holds one (items as sent: dicts, or any bad
        value the parser then rejects)."""
        for keys in envelopes:
            node: Any = payload
            for key in keys:
                node = node.get(key) if isinstance(node, dict) else None
            if isinstance(node, list):
                # an item that is not an object is one bad record: the parser rejects and counts
                # it, the other rows of the course are kept (transforms/payloads)
                return node
        seen = sorted(payload) if isinstance(payload, dict) else f"a JSON {type(payload).__name__}"
        expected = ", ".join(".".join(k) for k in envelopes)
        raise SourcePayloadError(
            system=self.SYSTEM,
            endpoint=endpoint,
            course_id=course_id,
            status=200,
            detail=f"unexpected envelope: top-level keys {seen}; expected a list at {expected}",
        )

    async def _page(
        self, engine: Engine, stats: FetchStats, course_id: str, offset: int, limit: int
    ) -> list[dict[str, Any]]:
        path = (
            f"/course-enrollments-attributes/{encode_course(course_id)}/"
            f"?limit={int(limit)}&offset={int(offset)}"
        )
        endpoint, payload = await self._get(engine, stats, "M1", path, course_id)
        stats.pages += 1
        return self._unwrap(payload, M1_ENVELOPES, endpoint, course_id)

    async def _export(
        self,
        engine: Engine,
        stats: FetchStats,
        eid: str,
        route: str,
        course_id: str,
        envelopes: tuple[tuple[str, ...], ...],
    ) -> list[dict[str, Any]]:
        path = f"/export/{route}/{encode_course(course_id)}/"
        endpoint, payload = await self._get(engine, stats, eid, path, course_id, export=True)
        rows = self._unwrap(payload, envelopes, endpoint, course_id)
        stats.learners = len(rows)
        return rows

    # -- public API ---------------------------------------------------------------------------
    def list_courses(self, *, log: LoggerLike | None = None) -> Fetched[list[dict[str, Any]]]:
        """M3: every course (``{"id", "display_name", ...}`` items)."""

        async def go(engine: Engine, stats: FetchStats) -> list[dict[str, Any]]:
            endpoint, payload = await self._get(engine, stats, "M3", "/course-details/all/", None)
            return self._unwrap(payload, M3_ENVELOPES, endpoint, None)

        return self._timed(go, log)

    def course_details(
        self, course_id: str, *, log: LoggerLike | None = None
    ) -> Fetched[dict[str, Any]]:
        """M2: the ``data`` object (display_name, start, end)."""

        async def go(engine: Engine, stats: FetchStats) -> dict[str, Any]:
            path = f"/course-details/display-name/?course_id={encode_course(course_id)}"
            endpoint, payload = await self._get(engine, stats, "M2", path, course_id)
            data = payload.get("data") if isinstance(payload, dict) else None
            if not isinstance(data, dict):
                seen = sorted(payload) if isinstance(payload, dict) else type(payload).__name__
                raise SourcePayloadError(
                    system=self.SYSTEM,
                    endpoint=endpoint,
                    course_id=course_id,
                    status=200,
                    detail=f"unexpected envelope: top-level keys {seen}; "
                    "expected an object at data",
                )
            return data

        return self._timed(go, log)

    def enrollments_page(
        self, course_id: str, offset: int, limit: int = 200, *, log: LoggerLike | None = None
    ) -> Fetched[list[dict[str, Any]]]:
        """M1: one page of raw enrollment items."""

        async def go(engine: Engine, stats: FetchStats) -> list[dict[str, Any]]:
            return await self._page(engine, stats, course_id, offset, limit)

        return self._timed(go, log)

    def enrollments(
        self, course_id: str, *, log: LoggerLike | None = None
    ) -> Fetched[list[dict[str, Any]]]:
        """M1: every page (``page_size`` items each) until an empty or short page."""
        limit = max(1, self.page_size)

        async def go(engine: Engine, stats: FetchStats) -> list[dict[str, Any]]:
            rows: list[dict[str, Any]] = []
            offset = 0
            previous_ids: list[Any] | None = None
            while True:
                page = await self._page(engine, stats, course_id, offset, limit)
                ids = [r.get("user_id", r.get("id")) if isinstance(r, dict) else r for r in page]
                if page and ids == previous_ids:
                    raise SourcePayloadError(
                        system=self.SYSTEM,
                        endpoint=f"M1 GET /course-enrollments-attributes/"
                        f"{encode_course(course_id)}/?offset={offset}",
                        course_id=course_id,
                        status=200,
                        detail="the page at this offset repeats the previous page: the server "
                        "seems to ignore offset; stopping instead of looping forever",
                    )
                previous_ids = ids
                rows.extend(page)
                if len(page) < limit:
                    break
                offset += limit
                if stats.pages % 25 == 0:
                    engine.log.info(
                        f"MOOC M1 course {course_id}: {len(rows)} enrollments so far "
                        f"({stats.pages} pages)"
                    )
            stats.learners = len(rows)
            return rows

        return self._timed(go, log)

    def export(
        self,
        eid: str,
        route: str,
        course_id: str,
        envelopes: tuple[tuple[str, ...], ...],
        *,
        log: LoggerLike | None = None,
    ) -> Fetched[list[dict[str, Any]]]:
        """Any ``/export/{route}/{course_id}/`` endpoint (spec id ``eid``): its row list, found at
        the first of ``envelopes`` (key paths) that holds a list."""

        async def go(engine: Engine, stats: FetchStats) -> list[dict[str, Any]]:
            return await self._export(engine, stats, eid, route, course_id, envelopes)

        return self._timed(go, log)

    def grades(self, course_id: str, *, log: LoggerLike | None = None) -> Fetched[list[dict]]:
        """M4: one grade row per learner (``students`` or ``grade_data.grade_table``)."""
        return self.export("M4", "student-grades", course_id, M4_ENVELOPES, log=log)

    def progress(self, course_id: str, *, log: LoggerLike | None = None) -> Fetched[list[dict]]:
        """M5: one progress row per learner (``students`` or
        ``students_progress_data.students_progress``)."""
        return self.export("M5", "student-progress", course_id, M5_ENVELOPES, log=log)

    def discussions(self, course_id: str, *, log: LoggerLike | None = None) -> Fetched[list[dict]]:
        """M6: one forum row per learner with activity (``students``)."""
        return self.export("M6", "student-discussions", course_id, M6_ENVELOPES, log=log)

    def whoami(self, *, log: LoggerLike | None = None) -> Fetched[dict[str, Any]]:
        """M12: the logged-in user (``data`` object); a cheap session check."""

        async def go(engine: Engine, stats: FetchStats) -> dict[str, Any]:
            endpoint, payload = await self._get(engine, stats, "M12", ME_PATH, None)
            data = payload.get("data") if isinstance(payload, dict) else None
            if not isinstance(data, dict):
                raise SourcePayloadError(
                    system=self.SYSTEM,
                    endpoint=endpoint,
                    status=200,
                    detail="expected an object at data",
                )
            return data

        return self._timed(go, log)


__all__ = ["MoocApiResource", "encode_course", "site_root"]

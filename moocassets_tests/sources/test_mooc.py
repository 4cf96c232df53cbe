"""MOOC client against an httpx.MockTransport fake: auth, re-login, paging, envelopes, errors."""

from __future__ import annotations

import logging
from urllib.parse import parse_qs

import httpx
import pytest

from moocassets.sources import (
    MoocApiResource,
    SourceAuthError,
    SourceHTTPError,
    SourcePayloadError,
    SourceUnavailableError,
)
from moocassets.sources.mooc import site_root
from moocassets_tests.sources import COURSE, COURSE_ENC, MOOC_BASE, MOOC_ROOT, FakeSleep

PASSWORD = "correct-horse-9"
EMAIL = "etl@example.edu"


class FakeMooc:
    """Just enough of the MOOC for the client: CSRF + login, session checks, M1-M6, M12."""

    def __init__(
        self,
        *,
        learners: int = 450,
        envelope: str = "data.enrollments",
        csrf_in_cookie: bool = True,
        expire_after: int = 0,
        always_401: bool = False,
    ) -> None:
        self.learners = learners
        self.envelope = envelope
        self.csrf_in_cookie = csrf_in_cookie
        self.expire_after = expire_after  # sessions die after N authenticated requests
        self.always_401 = always_401
        self.sessions: dict[str, int] = {"operator-sid-1": 0}
        self.requests: list[httpx.Request] = []
        self.login_posts: list[httpx.Request] = []
        self.ignore_offset = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path == "/csrf/api/v1/token":
            headers = {"Set-Cookie": "csrftoken=csrf-tok-42; Path=/"} if self.csrf_in_cookie else {}
            return httpx.Response(200, json={"csrfToken": "csrf-tok-42"}, headers=headers)
        if path == "/api/user/v1/account/login_session/":
            self.login_posts.append(request)
            form = parse_qs(request.content.decode())
            ok = (
                request.headers.get("x-csrftoken") == "csrf-tok-42"
                and request.headers.get("referer") == f"{MOOC_ROOT}/login"
                and request.headers.get("origin") == MOOC_ROOT
                and request.headers.get("content-type") == "application/x-www-form-urlencoded"
                and form == {"email": [EMAIL], "password": [PASSWORD]}
            )
            if not ok:
                return httpx.Response(
                    403, json={"success": False, "value": "Email or password is incorrect."}
                )
            sid = f"sid-{len(self.login_posts)}"
            self.sessions[sid] = 0
            return httpx.Response(
                200,
                json={"success": True},
                headers=[
                    ("Set-Cookie", f"sessionid={sid}; Path=/; HttpOnly"),
                    ("Set-Cookie", "edx-jwt-cookie-header-payload=jwtsecretpart; Path=/"),
                ],
            )
        sid = request.headers.get("cookie", "")
        sid = dict(p.split("=", 1) for p in sid.split("; ") if "=" in p).get("sessionid")
        api_call = path != "/api/custom/v1/users/me/"
        if (self.always_401 and api_call) or sid not in self.sessions:
            return httpx.Response(
                401, json={"detail": "Authentication credentials were not provided."}
            )
        self.sessions[sid] += 1
        if self.expire_after and self.sessions[sid] > self.expire_after:
            return httpx.Response(403, json={"detail": "session expired"})
        return self.api(request, path.removeprefix("/api/custom/v1"))

    def api(self, request: httpx.Request, path: str) -> httpx.Response:
        if path == "/users/me/":
            return httpx.Response(200, json={"success": True, "data": {"id": 4, "email": EMAIL}})
        if path.startswith("/course-enrollments-attributes/"):
            assert request.url.raw_path.startswith(
                f"/api/custom/v1/course-enrollments-attributes/{COURSE_ENC}/?".encode()
            )
            limit = int(request.url.params["limit"])
            offset = 0 if self.ignore_offset else int(request.url.params["offset"])
            items = [
                {"user_id": i, "username": f"sv{i:03d}"}
                for i in range(offset + 1, min(self.learners, offset + limit) + 1)
            ]
            body = {
                "data.enrollments": {"data": {"enrollments": items}},
                "data": {"data": items},
                "enrollments": {"enrollments": items},
                "results": {"results": items},
                "weird": {"items": items, "count": len(items)},
            }[self.envelope]
            return httpx.Response(200, json=body)
        if path == f"/export/student-grades/{COURSE}/":
            rows = [{"user_id": 1, "grade_percentage": 81.0}]
            if self.envelope == "grade_table":
                return httpx.Response(200, json={"grade_data": {"grade_table": rows}})
            return httpx.Response(200, json={"students": rows})
        if path == f"/export/student-progress/{COURSE}/":
            rows = [{"user_id": 1, "completion_rate": 98.29}]
            if self.envelope == "students_progress":
                body = {"students_progress_data": {"students_progress": rows}, "summary": {}}
                return httpx.Response(200, json=body)
            return httpx.Response(200, json={"students": rows})
        if path == f"/export/student-discussions/{COURSE}/":
            return httpx.Response(200, json={"students": [{"user_id": 1, "threads_count": 5}]})
        if path == "/course-details/display-name/":
            assert request.url.params["course_id"] == COURSE
            return httpx.Response(200, json={"success": True, "data": {"display_name": "FM101"}})
        if path == "/course-details/all/":
            return httpx.Response(200, json={"data": [{"id": COURSE, "display_name": "FM101"}]})
        return httpx.Response(404, json={"detail": "Not found."})

    def api_paths(self) -> list[str]:
        return [r.url.path for r in self.requests]


def mooc(fake: FakeMooc, **config: object) -> MoocApiResource:
    base: dict[str, object] = {"base_url": MOOC_BASE}
    base.update(config)
    return MoocApiResource(**base).with_transport(httpx.MockTransport(fake), sleep=FakeSleep())


def login_config() -> dict[str, object]:
    return {"email": EMAIL, "password": PASSWORD}


# ------------------------------------------------------------------------------ auth


def test_site_root() -> None:
    assert site_root(MOOC_BASE) == MOOC_ROOT
    assert site_root("https://x.edu/api/custom/v1/") == "https://x.edu"
    assert site_root("https://x.edu:8443/other/base") == "https://x.edu:8443"


def test_operator_session_cookie_is_sent_as_sessionid_and_edx_session() -> None:
    fake = FakeMooc()
    got = mooc(fake, sessionid="operator-sid-1").grades(COURSE)
    assert got.data == [{"user_id": 1, "grade_percentage": 81.0}]
    cookie = fake.requests[0].headers["cookie"]
    assert "sessionid=operator-sid-1" in cookie and "edx-session=operator-sid-1" in cookie
    assert fake.login_posts == []
    assert (
        fake.requests[0].url.raw_path
        == f"/api/custom/v1/export/student-grades/{COURSE_ENC}/".encode()
    )


@pytest.mark.parametrize("csrf_in_cookie", [True, False], ids=["cookie", "json"])
def test_login_flow_then_api_call(csrf_in_cookie: bool) -> None:
    fake = FakeMooc(csrf_in_cookie=csrf_in_cookie)
    res = mooc(fake, **login_config())
    with res.session():
        got = res.discussions(COURSE)
        res.progress(COURSE)  # same session: no second login
    assert got.data == [{"user_id": 1, "threads_count": 5}]
    assert fake.api_paths()[:4] == [
        "/csrf/api/v1/token",
        "/api/user/v1/account/login_session/",
        "/api/custom/v1/users/me/",
        f"/api/custom/v1/export/student-discussions/{COURSE}/",
    ]
    assert len(fake.login_posts) == 1
    assert "sessionid=sid-1" in fake.requests[3].headers["cookie"]


def test_wrong_password_fails_clearly_without_retrying_the_post(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    fake = FakeMooc()
    with pytest.raises(SourceAuthError) as info:
        mooc(fake, email=EMAIL, password="wrong-password-123").grades(COURSE)
    msg = str(info.value)
    assert f"MOOC login refused for {EMAIL}" in msg
    assert "login POST /api/user/v1/account/login_session/" in msg and "HTTP 403" in msg
    assert "wrong-password-123" not in msg and "wrong-password-123" not in caplog.text
    assert len(fake.login_posts) == 1
    assert not any("/export/" in p for p in fake.api_paths())


def test_expired_session_triggers_one_relogin_and_the_call_is_retried() -> None:
    fake = FakeMooc(expire_after=2)  # users/me + one call, then 403
    res = mooc(fake, **login_config())
    with res.session():
        first = res.grades(COURSE)
        second = res.progress(COURSE)  # 403 -> login again -> retried
        third = res.discussions(COURSE)
    assert first.stats.reauths == 0
    assert second.stats.reauths == 1 and second.data == [{"user_id": 1, "completion_rate": 98.29}]
    # every session of the fake lasts 2 requests (users/me + one call): a login per call
    assert third.data and third.stats.reauths == 1 and len(fake.login_posts) == 3


def test_operator_session_expiry_relogs_in_when_credentials_exist() -> None:
    fake = FakeMooc(expire_after=2)
    res = mooc(fake, sessionid="operator-sid-1", **login_config())
    with res.session():
        assert res.grades(COURSE).stats.reauths == 0
        assert res.grades(COURSE).stats.reauths == 0
        got = res.grades(COURSE)  # the operator session is used up: log in, retry
    assert got.stats.reauths == 1 and len(fake.login_posts) == 1
    assert got.data == [{"user_id": 1, "grade_percentage": 81.0}]


def test_expired_operator_session_without_credentials_fails_clearly() -> None:
    fake = FakeMooc(expire_after=0)
    with pytest.raises(SourceAuthError, match="no email/password is configured") as info:
        mooc(fake, sessionid="not-a-session-x").grades(COURSE)
    assert "not-a-session-x" not in str(info.value)


def test_persistent_401_relogs_in_only_once_per_call() -> None:
    fake = FakeMooc(always_401=True)
    with pytest.raises(SourceAuthError, match="again after a fresh login") as info:
        mooc(fake, sessionid="operator-sid-1", **login_config()).grades(COURSE)
    assert len(fake.login_posts) == 1
    assert info.value.status == 401 and info.value.course_id == COURSE


def test_login_secrets_are_redacted_from_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fake = FakeMooc(expire_after=2)
    res = mooc(fake, **login_config())
    with res.session():
        res.grades(COURSE)
        res.grades(COURSE)
    assert "logged in as etl@example.edu" in caplog.text
    for secret in (PASSWORD, "csrf-tok-42", "sid-1", "sid-2", "jwtsecretpart"):
        assert secret not in caplog.text


def test_no_credentials_at_all_is_a_clear_error() -> None:
    with pytest.raises(SourceAuthError, match="no sessionid and no email/password"):
        mooc(FakeMooc()).grades(COURSE)


# ------------------------------------------------------------------------------ M1 paging


@pytest.mark.parametrize("envelope", ["data.enrollments", "data", "enrollments", "results"])
def test_enrollments_pages_until_short_page_in_every_envelope(envelope: str) -> None:
    fake = FakeMooc(learners=450, envelope=envelope)
    got = mooc(fake, sessionid="operator-sid-1").enrollments(COURSE)
    assert [r["user_id"] for r in got.data] == list(range(1, 451))
    offsets = [r.url.params["offset"] for r in fake.requests]
    assert offsets == ["0", "200", "400"]
    assert got.stats.pages == 3 and got.stats.learners == 450


def test_enrollments_stop_on_an_empty_page() -> None:
    fake = FakeMooc(learners=400)
    got = mooc(fake, sessionid="operator-sid-1", page_size=200).enrollments(COURSE)
    assert len(got.data) == 400 and got.stats.pages == 3


def test_enrollments_page_passes_limit_and_offset() -> None:
    fake = FakeMooc(learners=450)
    got = mooc(fake, sessionid="operator-sid-1").enrollments_page(COURSE, offset=400, limit=100)
    assert [r["user_id"] for r in got.data] == list(range(401, 451))
    assert fake.requests[0].url.params["limit"] == "100"


def test_server_ignoring_offset_does_not_loop_forever() -> None:
    fake = FakeMooc(learners=1000)
    fake.ignore_offset = True
    with pytest.raises(SourcePayloadError, match="ignore offset"):
        mooc(fake, sessionid="operator-sid-1").enrollments(COURSE)
    assert len(fake.requests) == 2


def test_unexpected_envelope_names_endpoint_course_and_keys() -> None:
    fake = FakeMooc(envelope="weird")
    with pytest.raises(SourcePayloadError) as info:
        mooc(fake, sessionid="operator-sid-1").enrollments(COURSE)
    msg = str(info.value)
    assert "M1 GET /course-enrollments-attributes/" in msg and COURSE in msg
    assert "['count', 'items']" in msg and "data.enrollments" in msg


# ------------------------------------------------------------------------------ M2-M6


@pytest.mark.parametrize("envelope", ["students", "grade_table"])
def test_grades_both_envelopes(envelope: str) -> None:
    got = mooc(FakeMooc(envelope=envelope), sessionid="operator-sid-1").grades(COURSE)
    assert got.data == [{"user_id": 1, "grade_percentage": 81.0}]


@pytest.mark.parametrize("envelope", ["students", "students_progress"])
def test_progress_both_envelopes(envelope: str) -> None:
    got = mooc(FakeMooc(envelope=envelope), sessionid="operator-sid-1").progress(COURSE)
    assert got.data == [{"user_id": 1, "completion_rate": 98.29}]


def test_course_details_and_list_courses() -> None:
    res = mooc(FakeMooc(), sessionid="operator-sid-1")
    with res.session():
        assert res.course_details(COURSE).data == {"display_name": "FM101"}
        assert res.list_courses().data == [{"id": COURSE, "display_name": "FM101"}]
        assert res.whoami().data["id"] == 4


def test_unknown_course_is_a_404_error_naming_the_course() -> None:
    fake = FakeMooc()
    with pytest.raises(SourceHTTPError) as info:
        mooc(fake, sessionid="operator-sid-1").grades("course-v1:X+Y+Z")
    assert info.value.status == 404 and info.value.course_id == "course-v1:X+Y+Z"
    assert "/export/student-grades/course-v1%3AX%2BY%2BZ/" in str(info.value)
    assert len(fake.requests) == 1  # 404 is not retried


def test_export_5xx_exhaustion_names_everything() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(504, text="gateway timeout")

    res = MoocApiResource(base_url=MOOC_BASE, sessionid="operator-sid-1", max_attempts=2)
    with pytest.raises(SourceUnavailableError) as info:
        res.with_transport(httpx.MockTransport(handler), sleep=FakeSleep()).progress(COURSE)
    msg = str(info.value)
    assert "MOOC M5 GET /export/student-progress/" in msg and COURSE in msg
    assert "HTTP 504" in msg and "2 attempt" in msg

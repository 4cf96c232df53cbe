"""Client of the H5P/WordPress plugin API (endpoints H1-H5 of docs/source-apis §5).

Per-learner calls (H1, H2, H3/H4) fan out concurrently under the shared adaptive limiter. A 404
whose JSON ``code`` is ``no_data`` means "this learner has no rows" (``None``); any other 404 means
the route did not match, and the call is retried once with the course id percent-encoded (once
that works for a course, the encoded form is used for the rest of that call's learners).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Final
from urllib.parse import quote

from pydantic import Field

from moocassets.sources.errors import (
    SourceAuthError,
    SourceError,
    SourceHTTPError,
    SourcePayloadError,
)
from moocassets.sources.http import (
    Engine,
    Fetched,
    FetchStats,
    HttpSourceResource,
    LoggerLike,
    Request,
    fan_out,
    unique,
)


class _NoRoute:
    """Sentinel: 404 that is not ``no_data`` with both course id forms."""


NO_ROUTE: Final = _NoRoute()


def is_no_data(payload: Any) -> bool:
    return isinstance(payload, dict) and payload.get("code") == "no_data"


class _CourseForm:
    """Which course id form works for a course within one call (shared by its learners)."""

    def __init__(self, course_id: str) -> None:
        self.raw = course_id
        self.encoded = quote(course_id, safe="")
        self.use_encoded = False

    def forms(self) -> list[str]:
        if self.use_encoded or self.raw == self.encoded:
            return [self.encoded]
        return [self.raw, self.encoded]


class H5PApiResource(HttpSourceResource):
    """H5P-MANAGEMENT plugin API. ``base_url`` like ``https://h5p.example.edu/wp-json/mooc/v1``.

    Use ``log=`` on any method to route its progress lines to e.g. an asset's ``context.log``.
    """

    SYSTEM: ClassVar[str] = "H5P"

    max_concurrency: int = Field(default=16, description="max requests in flight (adaptive)")
    call_budget_seconds: float = Field(default=300.0, description="total time budget per call")

    async def _get_course_route(
        self,
        engine: Engine,
        stats: FetchStats,
        eid: str,
        prefix: str,
        form: _CourseForm,
        user_id: int | None,
    ) -> dict[str, Any] | _NoRoute | None:
        """GET ``{prefix}{course}``: the payload, None for ``no_data``, NO_ROUTE if unmatched."""
        forms = form.forms()
        for i, cid in enumerate(forms):
            path = f"{prefix}{cid}"
            endpoint = f"{eid} GET {path}"
            ans = await engine.get_json(
                Request(
                    url=self._api_url(path),
                    endpoint=endpoint,
                    course_id=form.raw,
                    user_id=user_id,
                    quiet=user_id is not None,
                ),
                stats,
            )
            if ans.status == 404:
                if is_no_data(ans.json):
                    return None
                if i + 1 < len(forms):
                    stats.fallbacks += 1
                    continue
                return NO_ROUTE
            if not isinstance(ans.json, dict):
                raise SourcePayloadError(
                    system=self.SYSTEM,
                    endpoint=endpoint,
                    course_id=form.raw,
                    user_id=user_id,
                    status=ans.status,
                    detail=f"expected a JSON object, got a JSON {type(ans.json).__name__}",
                )
            if cid == form.encoded and form.raw != form.encoded:
                form.use_encoded = True
            return ans.json
        return NO_ROUTE

    def _no_route_error(
        self, eid: str, prefix: str, form: _CourseForm, uid: int | None
    ) -> Exception:
        return SourceHTTPError(
            system=self.SYSTEM,
            endpoint=f"{eid} GET {prefix}{form.raw}",
            course_id=form.raw,
            user_id=uid,
            status=404,
            detail="route not matched with the course id unencoded nor percent-encoded "
            "(not a no_data answer); check base_url and the plugin version",
        )

    def per_learner(
        self,
        eid: str,
        route: str,
        course_id: str,
        user_ids: Sequence[int],
        *,
        log: LoggerLike | None = None,
    ) -> Fetched[dict[int, dict[str, Any] | None]]:
        """Any per-learner ``/{route}/{user_id}/{course_id}`` endpoint (spec id ``eid``) for
        every learner of ``user_ids``, fanned out concurrently; ``None`` = 404 ``no_data``."""

        async def go(engine: Engine, stats: FetchStats) -> dict[int, dict[str, Any] | None]:
            form = _CourseForm(course_id)

            async def one(uid: int) -> dict[str, Any] | None:
                prefix = f"/{route}/{uid}/"
                got = await self._get_course_route(engine, stats, eid, prefix, form, uid)
                if isinstance(got, _NoRoute):
                    raise self._no_route_error(eid, prefix, form, uid)
                return got

            return await fan_out(
                engine,
                unique(user_ids),
                one,
                label=f"H5P {eid} course {course_id}",
                stats=stats,
                probe_first=True,
            )

        return self._timed(go, log)

    # -- public API ---------------------------------------------------------------------------
    def scores(
        self, course_id: str, user_ids: Sequence[int], *, log: LoggerLike | None = None
    ) -> Fetched[dict[int, dict[str, Any] | None]]:
        """H1 per learner; ``None`` = 404 ``no_data`` (no rows)."""
        return self.per_learner("H1", "scores", course_id, user_ids, log=log)

    def video_progress(
        self, course_id: str, user_ids: Sequence[int], *, log: LoggerLike | None = None
    ) -> Fetched[dict[int, dict[str, Any] | None]]:
        """H2 per learner; ``None`` = 404 ``no_data``."""
        return self.per_learner("H2", "video-progress", course_id, user_ids, log=log)

    def dashboards(
        self, course_id: str, user_ids: Sequence[int], *, log: LoggerLike | None = None
    ) -> Fetched[dict[int, tuple[str, dict[str, Any]] | None]]:
        """H3 per learner, falling back to H4 for a learner whose H3 call fails (an error other
        than 404 after retries, or a 404 route miss). ``("H3"|"H4", payload)``, or ``None`` when
        the answer is 404 ``no_data``. If H3's route is missing altogether, later learners go
        straight to H4."""

        async def go(
            engine: Engine, stats: FetchStats
        ) -> dict[int, tuple[str, dict[str, Any]] | None]:
            h3_form, h4_form = _CourseForm(course_id), _CourseForm(course_id)
            h3_missing = False

            async def one(uid: int) -> tuple[str, dict[str, Any]] | None:
                nonlocal h3_missing
                reason = "H3 route not matched"
                if not h3_missing:
                    prefix = f"/combined-progress/{uid}/"
                    try:
                        got = await self._get_course_route(
                            engine, stats, "H3", prefix, h3_form, uid
                        )
                    except SourceAuthError:
                        raise
                    except SourceError as exc:
                        got = NO_ROUTE
                        reason = str(exc)
                    else:
                        if got is None:
                            return None
                        if isinstance(got, _NoRoute):
                            h3_missing = True
                        else:
                            return ("H3", got)
                stats.fallbacks += 1
                engine.log.debug(f"H5P course {course_id} learner {uid}: H4 fallback ({reason})")
                prefix = f"/dashboard/{uid}/"
                got4 = await self._get_course_route(engine, stats, "H4", prefix, h4_form, uid)
                if isinstance(got4, _NoRoute):
                    raise self._no_route_error("H4", prefix, h4_form, uid)
                return None if got4 is None else ("H4", got4)

            return await fan_out(
                engine,
                unique(user_ids),
                one,
                label=f"H5P H3/H4 course {course_id}",
                stats=stats,
                probe_first=True,
            )

        return self._timed(go, log)

    def course_students(
        self, course_id: str, *, log: LoggerLike | None = None
    ) -> Fetched[list[dict[str, Any]]]:
        """H5: one call per course; the ``students`` rows ([] on 404 ``no_data``)."""

        async def go(engine: Engine, stats: FetchStats) -> list[dict[str, Any]]:
            form = _CourseForm(course_id)
            got = await self._get_course_route(engine, stats, "H5", "/course-students/", form, None)
            if isinstance(got, _NoRoute):
                raise self._no_route_error("H5", "/course-students/", form, None)
            if got is None:
                return []
            rows = got.get("students")
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                raise SourcePayloadError(
                    system=self.SYSTEM,
                    endpoint=f"H5 GET /course-students/{course_id}",
                    course_id=course_id,
                    status=200,
                    detail=f"unexpected envelope: top-level keys {sorted(got)}; expected a list "
                    "of objects at students",
                )
            stats.learners = len(rows)
            return rows

        return self._timed(go, log)

"""Errors raised by the source clients.

Every error names the system (``MOOC``/``H5P``), the endpoint (id and request path, which never
contains secrets), the course, the HTTP status when there was one and the number of attempts. The
message is passed through :func:`moocassets.sources.redaction.redact` before it is stored, so it
is safe to log and to show in the Dagster UI.
"""

from __future__ import annotations

from moocassets.sources.redaction import redact


class SourceError(Exception):
    """Base class: an extraction call to a source system failed."""

    def __init__(
        self,
        *,
        system: str,
        endpoint: str,
        course_id: str | None = None,
        status: int | None = None,
        attempts: int | None = None,
        detail: str = "",
        user_id: int | None = None,
    ) -> None:
        self.system = system
        self.endpoint = redact(endpoint)
        self.course_id = course_id
        self.status = status
        self.attempts = attempts
        self.user_id = user_id
        self.detail = redact(detail)
        super().__init__(self._render())

    def _render(self) -> str:
        parts = [f"{self.system} {self.endpoint}"]
        if self.course_id is not None:
            parts.append(f"course {self.course_id}")
        if self.user_id is not None:
            parts.append(f"learner {self.user_id}")
        where = ", ".join(parts)
        status = f"HTTP {self.status}" if self.status is not None else "no HTTP status"
        attempts = f" after {self.attempts} attempt(s)" if self.attempts is not None else ""
        detail = f": {self.detail}" if self.detail else ""
        return f"{self.__class__.__name__}: {where} failed ({status}{attempts}){detail}"


class SourceHTTPError(SourceError):
    """The server answered with an error status that is not retried (e.g. 400, 404, 422)."""


class SourceUnavailableError(SourceError):
    """Retries or the per-call time budget were exhausted (5xx, 429, timeouts, bad bodies)."""


class SourceAuthError(SourceError):
    """Login refused, or the session was rejected (401/403) and could not be renewed."""


class SourcePayloadError(SourceError):
    """The server answered 2xx but the body has an envelope we do not know."""

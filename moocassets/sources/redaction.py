"""Secrets out of text: every log line and error message of the source clients goes through
:func:`redact` before it is written anywhere (log, metadata, exception).

Two mechanisms: values registered with :func:`register_secret` (the configured password and
session id, cookies and tokens received at login) are removed verbatim wherever they appear, and
the values of cookies, headers, form fields and JSON keys named like session ids, CSRF tokens,
passwords and edX JWT cookies are masked by pattern.
"""

from __future__ import annotations

import re
import threading

__all__ = ["REDACTED", "redact", "register_secret"]

_SECRET_NAMES = (
    r"sessionid|edx-session|csrftoken|csrfToken|csrfmiddlewaretoken|x-csrftoken|password|"
    r"edx-jwt-cookie-[A-Za-z0-9_-]+|edx-user-info"
)
# name=value / name: value (cookies, headers, form bodies, query strings, repr of dicts)
_KV_RE = re.compile(
    rf"(?i)(?P<name>{_SECRET_NAMES})(?P<sep>['\"]?\s*[=:]\s*['\"]?)(?P<value>[^;&\s'\",}}]+)"
)
# JSON: "password": "any value, spaces included"
_JSON_RE = re.compile(
    rf"(?i)(?P<name>[\"'](?:{_SECRET_NAMES})[\"']\s*:\s*)(?P<q>[\"'])[^\"']*(?P=q)"
)

_registered_secrets: set[str] = set()
_secrets_lock = threading.Lock()
REDACTED = "***"


def register_secret(value: str | None) -> None:
    """Remember a secret value (password, session id, token) so :func:`redact` removes it verbatim
    wherever it appears. Very short values are ignored (they would redact ordinary text)."""
    if value and len(value) >= 4:
        with _secrets_lock:
            _registered_secrets.add(value)


def redact(text: object) -> str:
    """Return ``str(text)`` without secrets: known secret values, and the values of cookies,
    headers, form fields and JSON keys named like session ids, CSRF tokens, passwords and edX JWT
    cookies."""
    out = str(text)
    with _secrets_lock:
        secrets = sorted(_registered_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in out:
            out = out.replace(secret, REDACTED)
    out = _JSON_RE.sub(lambda m: f"{m.group('name')}{m.group('q')}{REDACTED}{m.group('q')}", out)
    out = _KV_RE.sub(lambda m: f"{m.group('name')}{m.group('sep')}{REDACTED}", out)
    return out

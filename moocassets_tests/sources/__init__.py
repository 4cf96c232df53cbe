"""Tests of moocassets.sources. Shared helpers live here (no conftest of our own)."""

from __future__ import annotations

import threading

import httpx

MOOC_BASE = "http://mooc.test/api/custom/v1"
MOOC_ROOT = "http://mooc.test"
H5P_BASE = "http://h5p.test/wp-json/mooc/v1"
COURSE = "course-v1:DHQG-HCM+FM101+2025_S2"
COURSE_ENC = "course-v1%3ADHQG-HCM%2BFM101%2B2025_S2"


class FakeSleep:
    """Records the delays the client asked for and returns at once (no real waiting)."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


class ClosingTransport(httpx.MockTransport):
    """A MockTransport that records whether the client closed it."""

    def __init__(self, handler: object) -> None:
        super().__init__(handler)  # type: ignore[arg-type]
        self.closed = 0

    async def aclose(self) -> None:
        self.closed += 1


def http_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "moocassets-http" and t.is_alive()]

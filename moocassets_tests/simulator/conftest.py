"""Fixtures for the simulator tests: small worlds, an app, an in-process async client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from starlette.applications import Starlette

from moocassets.simulator import World, WorldConfig, create_app

EMAIL = "ops@example.edu"
PASSWORD = "s3cret-pass"
SID = "static-operator-session"
BASE = "http://testserver"
MOOC = "/api/custom/v1"
H5P = "/wp-json/mooc/v1"


def enc(course_id: str) -> str:
    """The MOOC form of a course id: percent-encoded with nothing safe."""
    return quote(course_id, safe="")


def unwrap_m1(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The extractor's rule: data.enrollments, data, enrollments or results."""
    data = body.get("data")
    if isinstance(data, dict) and "enrollments" in data:
        return data["enrollments"]
    if isinstance(data, list):
        return data
    if "enrollments" in body:
        return body["enrollments"]
    return body["results"]


def learner_id(item: dict[str, Any]) -> int:
    return int(item["user_id"] if "user_id" in item else item["id"])


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def world() -> World:
    return World(WorldConfig(courses=3, learners=60, seed=11))


@pytest.fixture
def app(world: World) -> Starlette:
    return create_app(world, mooc_email=EMAIL, mooc_password=PASSWORD, session_ids=[SID])


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """A client holding the static operator session."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=BASE,
                                 cookies={"sessionid": SID}) as c:
        yield c


@pytest.fixture
async def anon(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """A client without any cookie."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=BASE) as c:
        yield c

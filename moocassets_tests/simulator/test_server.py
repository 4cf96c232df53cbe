"""The simulator on a real loopback port: in a thread, and through the CLI."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from moocassets.simulator import (
    World,
    WorldConfig,
    create_app,
    h5p_base,
    mooc_base,
    serve_in_thread,
)

from .conftest import EMAIL, PASSWORD, enc, learner_id, unwrap_m1

REPO = Path(__file__).resolve().parents[2]


def _login(c: httpx.Client, root: str, password: str) -> httpx.Response:
    token = c.get(f"{root}/csrf/api/v1/token").json()["csrfToken"]
    return c.post(f"{root}/api/user/v1/account/login_session/",
                  data={"email": EMAIL, "password": password},
                  headers={"X-CSRFToken": token, "Referer": f"{root}/login", "Origin": root})


def test_serve_in_thread_over_loopback() -> None:
    world = World(WorldConfig(courses=2, learners=25, seed=8))
    app = create_app(world, mooc_email=EMAIL, mooc_password=PASSWORD)
    with serve_in_thread(app, port=0) as root, httpx.Client(timeout=10) as c:
        assert root.startswith("http://127.0.0.1:")
        mooc, h5p = mooc_base(root), h5p_base(root)
        assert c.get(f"{mooc}/users/me/").status_code == 401
        assert _login(c, root, PASSWORD).status_code == 200
        assert c.get(f"{mooc}/users/me/").json()["data"]["email"] == EMAIL
        cid = next(iter(world.courses))
        ids: list[int] = []
        while True:
            page = unwrap_m1(c.get(f"{mooc}/course-enrollments-attributes/{enc(cid)}/",
                                   params={"limit": 10, "offset": len(ids)}).json())
            ids += [learner_id(i) for i in page]
            if len(page) < 10:
                break
        assert ids == [e.user_id for e in world.visible_enrollments(cid)]
        # the H5P route sees the raw path: ':' and '+' arrive unencoded, "'" does not match
        e = next(x for x in world.visible_enrollments(cid)
                 if world.h5p_state(x, world.now_ts).rows)
        r = c.get(f"{h5p}/scores/{e.user_id}/{cid}")
        assert r.status_code == 200 and r.json()["user_id"] == str(e.user_id)
        assert c.get(f"{h5p}/scores/{e.user_id}/{enc(cid)}").json() == r.json()
        r = c.get(f"{h5p}/scores/{e.user_id}/course-v1:O'Reilly+X+1")
        assert r.status_code == 404 and r.json()["code"] == "rest_no_route"
        # a truncated body breaks the connection for a real client
        app.state.faults.update(truncated_rate=1.0, routes=("M3",))
        with pytest.raises(httpx.TransportError):
            c.get(f"{mooc}/course-details/all/")
        app.state.faults.update(truncated_rate=0.0)
        assert c.get(f"{mooc}/course-details/all/").status_code == 200
    with pytest.raises(httpx.TransportError):  # the server is gone
        httpx.get(f"{root}/__sim__/health", timeout=2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.e2e
def test_cli_serves_and_prints_a_generated_password() -> None:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "moocassets.simulator", "--port", str(port), "--courses", "1",
         "--learners", "5", "--mooc-email", EMAIL, "--log-level", "warning",
         "--envelope", "M1=results"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith(f"generated MOOC password for {EMAIL}: ")
        password = line.rsplit(" ", 1)[1].strip()
        root = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{root}/__sim__/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
            time.sleep(0.1)
        with httpx.Client(timeout=5) as c:
            assert _login(c, root, "wrong").status_code == 403
            assert _login(c, root, password).status_code == 200
            cid = c.get(f"{root}/api/custom/v1/course-details/all/").json()["data"][0]["id"]
            body = c.get(f"{root}/api/custom/v1/course-enrollments-attributes/{enc(cid)}/").json()
            assert list(body) == ["results"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()

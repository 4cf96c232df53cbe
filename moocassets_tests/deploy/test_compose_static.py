"""Static checks of the docker-compose stack, the Dockerfile and the secret handling.

There is no Docker engine on the CI/dev machine, so these tests read the files: the compose file
must only reference services, volumes, networks and variables that exist, build one image from
the lockfile, and keep secrets out of git.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
ENV_EXAMPLE = REPO / ".env.example"
DOCKERIGNORE = REPO / ".dockerignore"

THIRD_PARTY_IMAGES = {"mysql", "proxy", "rabbitmq"}  # not built from the Dockerfile
OPTIONAL_SERVICES = {  # service -> its compose profile
    "simulator": "demo", "proxy": "proxy",
    "rabbitmq": "celery", "celery-worker": "celery", "celery-worker-h5p": "celery",
}

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}; `$${...}` is an escaped literal `$`.
_VAR_RE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}")
_PLACEHOLDER_RE = re.compile(r"change-me|example\.(org|com)|^\d+$|^[a-z_]+$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _env_example() -> dict[str, str]:
    """Variables documented in .env.example: active lines and commented `# NAME=value` lines."""
    out: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        m = re.match(r"^\s*(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$", line)
        if m:
            out[m.group(2)] = m.group(3).strip()
    return out


def _active_env_example() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        m = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def _depends_on(svc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    dep = svc.get("depends_on", {})
    if isinstance(dep, list):  # short syntax: no condition at all
        return {name: {} for name in dep}
    return dep


def test_compose_parses_with_expected_services(services: dict[str, dict[str, Any]]) -> None:
    assert {"mysql", "code-server", "webserver", "webserver-readonly", "daemon", "simulator",
            "proxy"} <= set(services)


def test_mysql_is_mysql8_with_healthcheck_and_init_scripts(
    services: dict[str, dict[str, Any]],
) -> None:
    mysql = services["mysql"]
    assert re.fullmatch(r"mysql:8(\.\d+)*", mysql["image"]), mysql["image"]
    test = mysql["healthcheck"]["test"]
    assert "mysqladmin ping" in " ".join(test)
    mounts = mysql["volumes"]
    assert any(m.startswith("./deploy/mysql-init:/docker-entrypoint-initdb.d") for m in mounts)
    init = sorted(p.name for p in (REPO / "deploy" / "mysql-init").iterdir())
    sql = (REPO / "deploy" / "mysql-init" / "01-databases.sql").read_text()
    assert "`dagster_storage`" in sql and "`warehouse`" in sql
    users = (REPO / "deploy" / "mysql-init" / "02-users.sh").read_text()
    # the image runs *.sh and *.sql in name order and skips the template (02-users.sh reads it)
    assert init == ["01-databases.sql", "02-users.sh", "users.sql.template"]
    assert "users.sql.template" in users
    for var in ("DAGSTER_MYSQL_USER", "DAGSTER_MYSQL_PASSWORD", "WAREHOUSE_MYSQL_USER",
                "WAREHOUSE_MYSQL_PASSWORD"):
        assert re.search(r"\$\{?" + var + r"\b", users), var
        assert var in mysql["environment"]
    assert "IDENTIFIED BY 'change" not in users  # no literal password in the init script


def test_database_users_have_least_privileges() -> None:
    """Checked for real on MariaDB by test_database_users.py; here: what the script grants."""
    template = (REPO / "deploy" / "mysql-init" / "users.sql.template").read_text()
    statements = re.sub(r"--[^\n]*", "", template)  # comments may say anything
    grants = re.findall(r"'GRANT ([A-Z, ]+)'", statements)
    assert len(grants) == 2, grants  # one per user, each on its own database
    assert "ALL" not in " ".join(grants) and "GRANT OPTION" not in " ".join(grants)
    assert "*.*" not in statements  # no global privilege
    dagster, warehouse = (set(g.replace(" ON", "").split(", ")) for g in grants)
    assert warehouse == {"SELECT", "INSERT", "DELETE", "CREATE", "ALTER", "INDEX", "DROP"}
    assert dagster == warehouse | {"UPDATE", "REFERENCES"}
    assert re.search(r"'REVOKE ALL PRIVILEGES, GRANT OPTION FROM '", statements)
    assert re.search(r"@dagster_schema, ' TO ', @dagster_account", statements)
    assert re.search(r"@warehouse_schema, ' TO ', @warehouse_account", statements)


def test_depends_on_targets_exist_and_wait_for_health(
    services: dict[str, dict[str, Any]],
) -> None:
    checked = 0
    for name, svc in services.items():
        for target, spec in _depends_on(svc).items():
            assert target in services, f"{name} depends on unknown service {target}"
            # a service may depend on a profile's service only inside that same profile
            assert set(services[target].get("profiles", [])) <= set(svc.get("profiles", [])), (
                f"{name} depends on {target}, which only exists in a profile"
            )
            cond = spec.get("condition")
            assert cond in {
                "service_healthy",
                "service_started",
                "service_completed_successfully",
            }, f"{name} -> {target}: condition {cond!r}"
            if "healthcheck" in services[target]:
                assert cond == "service_healthy", f"{name} must wait for {target} to be healthy"
            if cond == "service_healthy":
                assert "healthcheck" in services[target], f"{target} has no healthcheck"
            checked += 1
    assert checked >= 6
    for svc in ("code-server", "webserver", "daemon"):
        assert _depends_on(services[svc])["mysql"]["condition"] == "service_healthy"
    assert _depends_on(services["webserver"])["code-server"]["condition"] == "service_healthy"
    assert _depends_on(services["daemon"])["code-server"]["condition"] == "service_healthy"


def test_named_volumes_and_networks_are_declared(compose: dict[str, Any]) -> None:
    declared_volumes = set(compose.get("volumes") or {})
    declared_networks = set(compose.get("networks") or {})
    for name, svc in compose["services"].items():
        for mount in svc.get("volumes", []):
            source = mount.split(":", 1)[0]
            if source.startswith((".", "/", "~")):
                if source.startswith("./"):
                    assert (REPO / source).exists(), f"{name}: bind source {source} missing"
                continue
            assert source in declared_volumes, f"{name}: volume {source} not declared"
        for net in svc.get("networks", []):
            assert net in declared_networks, f"{name}: network {net} not declared"


def test_every_variable_is_defined_in_env_example_or_defaulted() -> None:
    documented = _env_example()
    missing: list[str] = []
    used: set[str] = set()
    for m in _VAR_RE.finditer(COMPOSE.read_text()):
        var, op = m.group(1), m.group(2)
        used.add(var)
        if op in (":-", "-"):
            continue
        if var not in _active_env_example():
            missing.append(var)
    assert not missing, f"variables without default and not set in .env.example: {missing}"
    # Defaulted variables should still be documented so operators can find them.
    undocumented = sorted(used - set(documented))
    assert not undocumented, f"variables used in compose but not in .env.example: {undocumented}"


def test_one_image_built_from_the_dockerfile_used_everywhere(
    services: dict[str, dict[str, Any]],
) -> None:
    images = set()
    for name, svc in services.items():
        if name in THIRD_PARTY_IMAGES:
            continue
        assert svc["build"]["dockerfile"] == "Dockerfile", name
        assert svc["build"]["context"] == "."
        images.add(svc["image"])
    assert images == {"${MOOCASSETS_IMAGE:-moocassets:latest}"}
    # Run containers start from the code server's image (DockerRunLauncher reads this).
    assert services["code-server"]["environment"]["DAGSTER_CURRENT_IMAGE"] in images


def test_process_commands_and_workspace(services: dict[str, dict[str, Any]]) -> None:
    cs = services["code-server"]["command"]
    assert cs[:3] == ["dagster", "code-server", "start"]
    assert cs[cs.index("-m") + 1] == "moocassets.definitions"
    port = cs[cs.index("-p") + 1]
    web = services["webserver"]["command"]
    assert web[0] == "dagster-webserver"
    assert services["daemon"]["command"][:2] == ["dagster-daemon", "run"]
    workspace = yaml.safe_load((REPO / "deploy" / "workspace.yaml").read_text())
    (entry,) = workspace["load_from"]
    assert entry["grpc_server"]["host"] == "code-server"
    assert str(entry["grpc_server"]["port"]) == port
    assert entry["grpc_server"]["location_name"] == "moocassets"
    # both the webserver and the daemon load that workspace file (baked into the image)
    dockerfile = DOCKERFILE.read_text()
    ws_path = web[web.index("-w") + 1]
    daemon = services["daemon"]["command"]
    assert daemon[daemon.index("-w") + 1] == ws_path
    assert f"COPY deploy/workspace.yaml {ws_path}" in dockerfile


def test_simulator_is_optional_profile(services: dict[str, dict[str, Any]]) -> None:
    assert services["simulator"]["profiles"] == ["demo"]
    for name, svc in services.items():
        if name not in OPTIONAL_SERVICES:
            assert "profiles" not in svc, f"{name} must start without a profile"
    cmd = " ".join(services["simulator"]["command"])
    assert "moocassets.simulator" in cmd and "--port 8765" in cmd
    # the default API URLs point at the simulator service/port
    env = services["daemon"]["environment"]
    assert "http://simulator:8765/" in env["MOOCASSETS_MOOC_API_URL"]
    assert "http://simulator:8765/" in env["MOOCASSETS_H5P_API_URL"]


def test_run_containers_receive_the_same_environment(
    services: dict[str, dict[str, Any]],
) -> None:
    """Every name the DockerRunLauncher forwards must be set in the daemon, or launch fails."""
    launcher = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())["run_launcher"]
    daemon_env = services["daemon"]["environment"]
    for name in launcher["config"]["env_vars"]:
        assert "=" not in name, "values belong in .env, not in dagster.yaml"
        assert name in daemon_env, f"{name} forwarded to runs but not set in the daemon"
    compose = yaml.safe_load(COMPOSE.read_text())
    assert launcher["config"]["network"] == compose["networks"]["moocassets"]["name"]
    vol = compose["volumes"]["dagster_storage"]["name"]
    assert any(v.startswith(f"{vol}:") for v in launcher["config"]["container_kwargs"]["volumes"])


def test_env_is_git_ignored_and_example_committed_with_placeholders() -> None:
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", ".env"], cwd=REPO, check=False
    ).returncode
    assert ignored == 0, ".env must be git-ignored"
    example_ignored = subprocess.run(
        ["git", "check-ignore", "-q", ".env.example"], cwd=REPO, check=False
    ).returncode
    assert example_ignored == 1, ".env.example must be committable"
    env = _active_env_example()
    secrets = {k: v for k, v in env.items() if re.search("PASSWORD|SECRET|TOKEN|SESSIONID", k)}
    assert {"MYSQL_ROOT_PASSWORD", "DAGSTER_MYSQL_PASSWORD", "WAREHOUSE_MYSQL_PASSWORD"} <= set(
        secrets
    )
    for key, value in secrets.items():
        assert value.startswith("change-me"), f"{key} in .env.example must be a placeholder"
    for key, value in env.items():
        assert _PLACEHOLDER_RE.search(value) or value.startswith("http"), (key, value)


def test_compose_file_contains_no_literal_secrets(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        env = svc.get("environment", {})
        for key, value in env.items():
            if re.search("PASSWORD|SECRET|TOKEN", key):
                assert str(value).startswith("${"), f"{name}.{key} must come from .env"


def test_dockerfile_installs_from_lockfile_as_non_root() -> None:
    text = DOCKERFILE.read_text()
    instructions = [
        line.strip()
        for line in text.replace("\\\n", " ").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert instructions[0].startswith("FROM python:3.11-slim")
    assert "COPY requirements.lock ./" in instructions
    install = [i for i in instructions if "-r requirements.lock" in i]
    assert install and "--require-hashes" in install[0] and "--no-deps" in install[0]
    # the package itself adds no unlocked dependency
    pkg = [i for i in instructions if re.search(r"pip install .*--no-deps \.(\s|$)", i)]
    assert pkg, "package must be installed with --no-deps"
    assert instructions.index(install[0]) < instructions.index(pkg[0])
    env_line = next(i for i in instructions if i.startswith("ENV") and "DAGSTER_HOME=" in i)
    dagster_home = re.search(r"DAGSTER_HOME=(\S+)", env_line).group(1)  # type: ignore[union-attr]
    assert "COPY deploy/dagster.yaml ${DAGSTER_HOME}/dagster.yaml" in instructions
    assert dagster_home == "/opt/dagster/dagster_home"
    users = [i for i in instructions if i.startswith("USER ")]
    assert users and users[-1] not in ("USER root", "USER 0"), "must run as non-root"
    # the compute-log volume mounts under DAGSTER_HOME/storage
    assert any("${DAGSTER_HOME}/storage" in i for i in instructions)


def test_lockfile_contains_the_deploy_plugins_with_hashes() -> None:
    lock = (REPO / "requirements.lock").read_text()
    for pkg in ("dagster-docker==0.29.27", "dagster-mysql==0.29.27", "dagster==1.13.27"):
        block = lock.split(pkg, 1)
        assert len(block) == 2, f"{pkg} missing from requirements.lock"
        assert "--hash=sha256:" in block[1].split("\n\n", 1)[0][:400]


def test_dockerignore_keeps_secrets_and_venv_out_of_the_image() -> None:
    lines = {ln.strip() for ln in DOCKERIGNORE.read_text().splitlines()}
    assert {".env", ".venv", ".git"} <= lines
    # files the Dockerfile copies must not be ignored
    for needed in ("requirements.lock", "pyproject.toml", "moocassets", "deploy"):
        assert needed not in lines


def test_every_copy_source_exists_in_the_build_context() -> None:
    ignored = {ln.strip() for ln in DOCKERIGNORE.read_text().splitlines()}
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("COPY "):
            *sources, _dest = line.split()[1:]
            for src in sources:
                assert (REPO / src).exists(), f"Dockerfile copies {src}, which does not exist"
                assert src not in ignored, f"{src} is excluded by .dockerignore"


# --- Who can reach what (issue 15): docs/DEPLOYMENT.md "Who can reach what" ------------------

CADDYFILE = REPO / "deploy" / "proxy" / "Caddyfile"


def _with_defaults(text: str) -> str:
    """``text`` with every ``${VAR:-default}`` replaced by its default (what an empty .env
    gives); a variable without a default is left as ``<VAR>``."""
    return _VAR_RE.sub(
        lambda m: m.group(3) if m.group(2) in (":-", "-") else f"<{m.group(1)}>", text
    )


def _published(svc: dict[str, Any]) -> list[tuple[str, str]]:
    """(host address, container port) of each published port, with default variables."""
    out = []
    for mapping in svc.get("ports", []):
        if isinstance(mapping, dict):  # long syntax
            out.append((str(mapping.get("host_ip", "0.0.0.0")), str(mapping["target"])))
            continue
        parts = _with_defaults(str(mapping)).split(":")
        out.append((parts[0] if len(parts) == 3 else "0.0.0.0", parts[-1]))
    return out


def test_nothing_but_the_proxy_is_published_beyond_loopback_by_default(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, svc in services.items():
        if name == "proxy":
            continue  # every site behind basic auth (test below, and test_proxy.py for real)
        for address, port in _published(svc):
            assert address == "127.0.0.1", f"{name} publishes {port} on {address}"
    # the full UI has no setting that would open it: its address is not a variable
    assert services["webserver"]["ports"] == ["127.0.0.1:${DAGSTER_WEBSERVER_PORT:-3000}:3000"]


def test_docker_socket_only_where_no_one_gets_in_without_a_login(
    services: dict[str, dict[str, Any]],
) -> None:
    with_socket = {
        name for name, svc in services.items()
        if any("docker.sock" in str(v) for v in svc.get("volumes", []))
    }
    # the daemon launches run containers; the full UI stops them. Neither is reachable from
    # another host except through the proxy's operator accounts.
    assert with_socket == {"daemon", "webserver"}
    assert "ports" not in services["daemon"]
    for name in ("webserver-readonly", "proxy"):
        assert "group_add" not in services[name]


def test_readonly_webserver_is_the_same_ui_without_mutations(
    services: dict[str, dict[str, Any]],
) -> None:
    readonly, full = services["webserver-readonly"], services["webserver"]
    assert readonly["command"] == [*full["command"], "--read-only"]
    assert readonly["volumes"] == ["dagster_storage:/opt/dagster/dagster_home/storage:ro"]
    assert readonly["healthcheck"] == full["healthcheck"]
    assert _depends_on(readonly) == _depends_on(full)


def test_webservers_and_proxy_hold_no_warehouse_or_source_credentials(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in ("webserver", "webserver-readonly", "proxy"):
        env = services[name].get("environment", {})
        leaked = [k for k in env if k.startswith("MOOCASSETS_") or k.startswith("WAREHOUSE_")]
        assert not leaked, f"{name} does not run asset code but gets {leaked}"
    for name in ("code-server", "daemon"):  # these evaluate and launch asset code
        assert "MOOCASSETS_DATABASE_URL" in services[name]["environment"]


def _caddy_blocks(text: str) -> dict[str, str]:
    """Top-level blocks of a Caddyfile: header line -> body (blocks close with `}` at column 0)."""
    blocks: dict[str, str] = {}
    header: str | None = None
    body: list[str] = []
    for line in text.splitlines():
        if header is None:
            if line.rstrip().endswith("{") and not line.startswith(("#", " ", "\t")):
                header, body = line.rstrip()[:-1].strip(), []
        elif line.startswith("}"):
            blocks[header] = "\n".join(body)
            header = None
        else:
            body.append(line.split("#", 1)[0] if line.lstrip().startswith("#") else line)
    assert header is None, "unclosed block"
    return blocks


def test_proxy_puts_basic_auth_in_front_of_every_site(
    services: dict[str, dict[str, Any]],
) -> None:
    """Static half (`caddy validate` and real requests: test_proxy.py)."""
    blocks = _caddy_blocks(CADDYFILE.read_text())
    options = blocks.pop("")
    assert "admin off" in options and "auto_https disable_redirects" in options
    sites = {h: b for h, b in blocks.items() if not h.startswith("(")}
    assert len(sites) == 2
    upstreams = {}
    for header, body in sites.items():
        assert "basic_auth {" in body and "reverse_proxy" in body, header
        upstream = re.search(r"reverse_proxy \{\$[A-Z_]+:([\w-]+):(\d+)\}", body)
        assert upstream, body
        upstreams[upstream.group(1)] = (header, body)
        service = services[upstream.group(1)]
        assert upstream.group(2) == service["command"][service["command"].index("-p") + 1]
    readonly_site, readonly = upstreams["webserver-readonly"]
    admin_site, admin = upstreams["webserver"]
    assert "PROXY_VIEWER_USER" in readonly and "PROXY_OPERATOR_USER" in readonly
    assert "PROXY_VIEWER_USER" not in admin and "PROXY_OPERATOR_USER" in admin
    # compose publishes each site's default port, and passes every account variable
    proxy = services["proxy"]
    site_ports = {h.rsplit(":", 1)[1].rstrip("}") for h in (readonly_site, admin_site)}
    assert {port for _, port in _published(proxy)} == site_ports
    code = "\n".join(line.split("#", 1)[0] for line in CADDYFILE.read_text().splitlines())
    for var in re.findall(r"\{\$([A-Z_]+)\}", code):
        assert var in proxy["environment"], f"{var} is used by the Caddyfile, not passed"
    assert "./deploy/proxy/Caddyfile:/etc/caddy/Caddyfile:ro" in proxy["volumes"]
    assert proxy["profiles"] == ["proxy"]
    assert re.fullmatch(r"caddy:2\.\d+-alpine", proxy["image"])

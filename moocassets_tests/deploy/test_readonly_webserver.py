"""The read-only webserver of the deploy (`dagster-webserver --read-only`, compose service
`webserver-readonly`), for real: it serves the lineage and refuses every mutation the full UI
offers, and the instance stays untouched. It runs the same command as the compose service, on
the real definitions, with a local instance instead of MySQL.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest
import yaml

from moocassets.processes import free_port, stop_process_group

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SELECTOR = '{repositoryLocationName: "moocassets", repositoryName: "__repository__"}'
MUTATIONS = {
    "launchPartitionBackfill": """mutation { launchPartitionBackfill(backfillParams: {
        assetSelection: [{path: ["raw_data"]}], partitionNames: ["course-v1:A+B+C"]}) {
        __typename } }""",
    "addDynamicPartition": f"""mutation {{ addDynamicPartition(partitionsDefName: "course_id",
        partitionKey: "course-v1:A+B+C", repositorySelector: {SELECTOR}) {{ __typename }} }}""",
    "wipeAssets": """mutation { wipeAssets(assetPartitionRanges: [{assetKey: {path: ["raw_data"]}}])
        { __typename } }""",
    "terminateRun": """mutation { terminateRun(runId: "0e2b8c1e-0000-4000-8000-000000000000") {
        __typename } }""",
}


def _compose_command() -> list[str]:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return list(compose["services"]["webserver-readonly"]["command"])


@pytest.fixture(scope="module")
def readonly_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    home = tmp_path_factory.mktemp("dagster_home")
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    command = _compose_command()
    assert command[0] == "dagster-webserver" and command[-1] == "--read-only"
    port = free_port()
    args = [str(Path(sys.executable).parent / "dagster-webserver"), "--read-only",
            "-m", "moocassets.definitions", "-h", "127.0.0.1", "-p", str(port)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOOCASSETS_")}
    env.update({"DAGSTER_HOME": str(home), "PYTHONWARNINGS": "ignore",
                "MOOCASSETS_SQLITE_PATH": str(home / "warehouse.sqlite")})
    log = (home / "webserver.log").open("wb")
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (home / "webserver.log").read_text()[-3000:]
            try:
                if httpx.get(f"{url}/server_info", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, (home / "webserver.log").read_text()[-3000:]
            time.sleep(0.5)
        yield url, home
    finally:
        stop_process_group(proc)
        log.close()


def _graphql(url: str, query: str) -> dict[str, Any]:
    answer = httpx.post(f"{url}/graphql", json={"query": query}, timeout=60)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert "errors" not in body, body
    return body["data"]


def test_it_serves_the_lineage(readonly_ui: tuple[str, Path]) -> None:
    url, _ = readonly_ui
    nodes = _graphql(url, "{ assetNodes { assetKey { path } } }")["assetNodes"]
    assert {"raw_data", "enrollments", "mooc_enrollments_extract"} <= {
        "/".join(n["assetKey"]["path"]) for n in nodes
    }
    permissions = _graphql(url, "{ permissions { permission value } }")["permissions"]
    listed = {p["permission"] for p in permissions}
    assert {"launch_pipeline_execution", "terminate_pipeline_execution", "wipe_assets",
            "edit_dynamic_partitions", "launch_partition_backfill", "edit_sensor"} <= listed
    assert not [p["permission"] for p in permissions if p["value"]]  # the UI greys them out


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_every_mutation_is_refused(readonly_ui: tuple[str, Path], name: str) -> None:
    url, _ = readonly_ui
    assert _graphql(url, MUTATIONS[name])[name]["__typename"] == "UnauthorizedError"


def test_the_instance_is_untouched(readonly_ui: tuple[str, Path]) -> None:
    url, home = readonly_ui
    for query in MUTATIONS.values():
        _graphql(url, query)
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        assert instance.get_backfills() == []
        assert instance.get_dynamic_partitions("course_id") == []
        assert instance.get_run_records() == []
    finally:
        instance.dispose()

"""The recipes (docs/recipes.md) tried here for real, as far as this machine allows.

- The commands the cron entry, the systemd service and the Kubernetes manifests run, run as written
  (only the install paths are pointed at this checkout and a temporary folder) against the real node.
- OpenSearch with basic auth and a CA file: examples/opensearch-basic-auth.toml's [target] against the
  real node behind a TLS proxy whose certificate a trustme CA signed. The proxy records the Authorization
  header it was sent; the node here has no security plugin, so the password itself is not checked.
- Elastic Cloud: a cloud_id that names the TLS proxy, with an API key from a variable. On Elasticsearch
  the whole reindex runs; on OpenSearch the elasticsearch client reaches the node and is refused by its
  product check (exit 2), which still proves the address, TLS and the key's header.
- Oracle thin mode: no Oracle server here; a connection to a closed loopback port fails with the thin
  driver's own error, not the "Instant Client missing" one thick mode would give.
"""

from __future__ import annotations

import base64
import json
import shlex
import signal
import ssl
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import trustme

from tests.support.harness import (
    CLIENT_ENGINE,
    count,
    free_port,
    http_get,
    run_indexer,
    sqlite_source,
    start_indexer,
    write_job,
)
from tests.support.httpproxy import RecordingProxy

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES, DEPLOY = ROOT / "examples", ROOT / "deploy"
INDEXER_HERE = str(Path(sys.executable).with_name("indexer"))
PASSWORD = "recipe p@ss%word"
API_KEY = "cmVjaXBlOmtleQ=="


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    ca = trustme.CA()
    folder = tmp_path_factory.mktemp("recipe-tls")
    ca.cert_pem.write_to_path(str(folder / "root-ca.pem"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return {"ca_pem": folder / "root-ca.pem", "context": context}


@pytest.fixture
def proxy(engine_url, tls):
    with RecordingProxy(upstream=engine_url, ssl_context=tls["context"]) as running:
        yield running


def _example(name: str) -> dict:
    return tomllib.loads((EXAMPLES / name).read_text())


@pytest.fixture
def basic_auth_job(tmp_path, tls, proxy, alias, sqlite_sensors) -> Path:
    """examples/opensearch-basic-auth.toml with only the database, the url, the alias (and the engine, on
    Elasticsearch) changed; the CA file where the example expects it, certs/root-ca.pem beside the job."""
    example = _example("opensearch-basic-auth.toml")
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "root-ca.pem").write_bytes(tls["ca_pem"].read_bytes())
    target = {**example["target"], "url": proxy.url, "engine": CLIENT_ENGINE}
    return write_job(tmp_path / "sensors.toml", sqlite_source(sqlite_sensors), target, {**example["job"], "alias": alias})


def _env() -> dict[str, str]:
    return {"OPENSEARCH_PASSWORD": PASSWORD}


def _here(text: str, job: Path, tmp_path: Path) -> str:
    """A recipe's text with its install paths pointed at this checkout and ``tmp_path``."""
    for installed, here in (("/opt/indexer/bin/indexer", INDEXER_HERE), ("/etc/indexer/sensors.toml", str(job)),
                            ("/etc/indexer/indexer.env", str(tmp_path / "indexer.env")),
                            ("/var/lib/indexer", str(tmp_path)), ("/var/log/indexer", str(tmp_path)),
                            ("/run/lock", str(tmp_path))):
        text = text.replace(installed, here)
    return text


def _env_file(tmp_path: Path) -> None:
    (tmp_path / "indexer.env").write_text(f"OPENSEARCH_PASSWORD='{PASSWORD}'\n")
    (tmp_path / "indexer.env").chmod(0o600)


def test_opensearch_basic_auth_with_a_ca_file_indexes_over_https(basic_auth_job, proxy, alias, sqlite_sensors):
    result = run_indexer("reindex", str(basic_auth_job), "--json", env=_env())

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["indexed"] == count(alias) == 3000
    basic = "Basic " + base64.b64encode(f"indexer:{PASSWORD}".encode()).decode()
    assert proxy.authorizations and set(proxy.authorizations) == {basic}
    assert PASSWORD not in result.stdout + result.stderr


def test_the_cron_entry_runs_here_as_written(tmp_path, basic_auth_job, alias):
    assert run_indexer("reindex", str(basic_auth_job), env=_env()).returncode == 0
    _env_file(tmp_path)
    entry = [line for line in (DEPLOY / "cron" / "indexer-sync.cron").read_text().splitlines()
             if line.startswith("*/5 ")][0]
    command = _here(entry.split(None, 6)[6], basic_auth_job, tmp_path)
    # as cron runs it: /bin/sh, cron's PATH, and no secret in the environment it starts with
    result = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, timeout=180,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})

    assert result.returncode == 0 and result.stderr == "", result.stderr
    log = (tmp_path / "sync.log").read_text()
    assert "sync" in log and PASSWORD not in log


def test_the_systemd_service_command_runs_here_as_written(tmp_path, basic_auth_job, alias):
    assert run_indexer("reindex", str(basic_auth_job), env=_env()).returncode == 0
    service = (DEPLOY / "systemd" / "indexer-sync.service").read_text()
    exec_start = next(line for line in service.splitlines() if line.startswith("ExecStart="))
    argv = shlex.split(_here(exec_start.removeprefix("ExecStart="), basic_auth_job, tmp_path))
    result = subprocess.run(argv, capture_output=True, text=True, timeout=180,
                            env={"PATH": "/usr/bin:/bin", **_env()})  # EnvironmentFile= gives the variables

    assert result.returncode == 0, result.stderr
    assert argv[0] == INDEXER_HERE and "sync" in result.stdout


def test_the_kubernetes_commands_run_here_and_sync_every_stops_cleanly_on_sigterm(tmp_path, basic_auth_job, alias):
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed: the manifests cannot be read")

    def argv(name: str) -> list[str]:
        [doc] = yaml.safe_load_all((DEPLOY / "kubernetes" / name).read_text())
        pod = doc["spec"]["jobTemplate"]["spec"] if doc["kind"] == "CronJob" else doc["spec"]
        [container] = pod["template"]["spec"]["containers"]
        return [_here(word, basic_auth_job, tmp_path) for word in container["command"] + container["args"]]

    reindex = argv("reindex-cronjob.yaml")
    assert subprocess.run([INDEXER_HERE, *reindex[1:]], env={"PATH": "/usr/bin:/bin", **_env()},
                          capture_output=True, text=True, timeout=180).returncode == 0
    assert count(alias) == 3000

    deployment = argv("sync-deployment.yaml")
    port = deployment.index("--metrics-port") + 1
    deployment[port] = str(free_port())  # the pod's own port; here three engine suites run side by side
    [doc] = yaml.safe_load_all((DEPLOY / "kubernetes" / "sync-deployment.yaml").read_text())
    [container] = doc["spec"]["template"]["spec"]["containers"]
    probes = [container[p]["httpGet"]["path"] for p in ("livenessProbe", "readinessProbe")]
    sync = start_indexer(*deployment[1:], env=_env())
    first = json.loads(sync.stderr.readline())  # --log-format json: the loop's start, then one object per
    passed = first                              # pass (and any warning between)
    while passed["event"] != "pass":
        passed = json.loads(sync.stderr.readline())
    answers = [http_get(f"http://127.0.0.1:{deployment[port]}{path}")[0] for path in probes]
    sync.send_signal(signal.SIGTERM)  # what the kubelet sends on a rollout or drain
    _, err = sync.communicate(timeout=60)

    assert first["event"] == "started" and (passed["event"], passed["outcome"]) == ("pass", "ok"), err
    assert probes == ["/healthz", "/readyz"] and answers == [200, 200]  # alive, and ready after a good pass
    assert sync.returncode == 0, err


def test_elastic_cloud_cloud_id_and_api_key_reach_the_cluster(tmp_path, tls, proxy, alias, sqlite_sensors):
    # A Cloud ID is "name:" + base64("<host>:<port>$<es id>$<kibana id>") and the client connects to
    # https://<es id>.<host>:<port>; "127.0" + "0.1" names the proxy, so nothing leaves this machine.
    cloud_id = "recipe:" + base64.b64encode(f"0.1:{proxy.port}$127.0$kibana".encode()).decode()
    example = _example("elastic-cloud.toml")
    (tmp_path / "ca.pem").write_bytes(tls["ca_pem"].read_bytes())
    target = {**example["target"], "cloud_id": cloud_id, "ca_certs": "ca.pem"}
    job = write_job(tmp_path / "cloud.toml", sqlite_source(sqlite_sensors), target, {**example["job"], "alias": alias})

    result = run_indexer("reindex", str(job), env={"ES_API_KEY": API_KEY})

    assert f"ApiKey {API_KEY}" in proxy.authorizations
    assert API_KEY not in result.stdout + result.stderr
    if CLIENT_ENGINE == "elasticsearch":
        assert result.returncode == 0, result.stderr
        assert count(alias) == 3000
    else:  # the elasticsearch client's product check refuses OpenSearch: one line, exit 2
        assert result.returncode == 2 and "OpenSearch" in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_oracle_runs_in_thin_mode_without_an_instant_client(tmp_path, engine_url, alias):
    example = _example("sensors-oracle.toml")
    source = {**example["source"], "host": "127.0.0.1", "port": 1}  # nothing listens there
    settings = {k: v for k, v in example["job"].items() if k != "params"}
    job = write_job(tmp_path / "oracle.toml", source, {"url": engine_url}, {**settings, "alias": alias},
                    params=example["job"]["params"])
    (tmp_path / "transforms.py").write_text((EXAMPLES / "transforms.py").read_text())

    result = run_indexer("reindex", str(job), env={"ORACLE_PASSWORD": PASSWORD})

    assert result.returncode == 1, result.stderr
    assert "cannot connect to Oracle at 127.0.0.1:1" in result.stderr and "DPY-" in result.stderr, result.stderr
    assert "DPI-1047" not in result.stderr  # thick mode's "Cannot locate an Oracle Client library"
    assert PASSWORD not in result.stderr

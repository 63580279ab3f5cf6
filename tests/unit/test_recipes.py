"""The recipe files in deploy/ (docs/recipes.md) are real: the manifests parse, every command they run is an
`indexer` command with options `indexer <cmd> --help` lists and that parse as given, the systemd units pass
`systemd-analyze verify`, and secrets reach the process only from an environment file or a Kubernetes Secret."""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from indexer.cli import app
from indexer.jobfile import load_job

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMMANDS = typer.main.get_command(app).commands
INSTALLED = "/opt/indexer/bin/indexer"  # where the recipes assume indexer is installed
K8S_JOB_FILE = ROOT / "examples" / "opensearch-basic-auth.toml"  # the job file the ConfigMap is made from


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str
    parser.read(DEPLOY / "systemd" / name)
    return parser


def _cron_entries() -> list[str]:
    lines = (DEPLOY / "cron" / "indexer-sync.cron").read_text().splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


def _cron_argv() -> list[str]:
    """The indexer command the cron entry runs (inside its `sh -c '...'`, after `exec`)."""
    entry = next(e for e in _cron_entries() if not re.match(r"^\w+=", e))
    fields = entry.split(None, 6)  # minute hour day month weekday user command
    command = shlex.split(fields[6])
    script = command[command.index("-c") + 1]
    exec_part = next(part for part in script.split(";") if part.strip().startswith("exec "))
    return [word for word in shlex.split(exec_part)[1:] if not word.startswith(">")]


def _manifests() -> dict[str, list[dict]]:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed: the Kubernetes manifests are not parsed")
    return {path.name: list(yaml.safe_load_all(path.read_text())) for path in sorted((DEPLOY / "kubernetes").glob("*.yaml"))}


def _containers(doc: dict) -> list[dict]:
    spec = doc["spec"]["jobTemplate"]["spec"] if doc["kind"] == "CronJob" else doc["spec"]
    return spec["template"]["spec"]["containers"]


def _k8s_argvs() -> list[list[str]]:
    return [[*c["command"], *c["args"]] for docs in _manifests().values() for doc in docs for c in _containers(doc)]


def _check_indexer_command(argv: list[str]) -> None:
    """``argv`` runs indexer with a real command, options that command's --help lists, and parses as given."""
    assert Path(argv[0]).name == "indexer", argv
    name, args = argv[1], argv[2:]
    assert name in COMMANDS, f"indexer has no command {name!r}"
    help_text = CliRunner().invoke(app, [name, "--help"], terminal_width=240).output
    for option in (a for a in args if a.startswith("--")):
        assert option in help_text, f"`indexer {name} --help` does not list {option}"
    COMMANDS[name].make_context(f"indexer {name}", list(args))  # raises on an unknown option or a bad value


def test_the_systemd_service_runs_a_real_indexer_command():
    argv = shlex.split(_unit("indexer-sync.service")["Service"]["ExecStart"])
    assert argv[0] == INSTALLED and argv[1] == "sync"
    _check_indexer_command(argv)


def test_the_systemd_daemon_runs_every_job_of_a_folder_with_metrics_and_restarts_on_failure():
    service = _unit("indexer-daemon.service")["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv[:3] == [INSTALLED, "sync", "/etc/indexer/jobs"] and "--every" in argv and "--metrics-port" in argv
    _check_indexer_command(argv)
    assert service["Restart"] == "on-failure" and service["EnvironmentFile"] == "/etc/indexer/indexer.env"
    assert "Environment" not in service


def test_the_cron_entry_runs_a_real_indexer_command():
    argv = _cron_argv()
    assert argv[0] == INSTALLED and argv[1] == "sync"
    _check_indexer_command(argv)


def test_the_kubernetes_manifests_run_real_indexer_commands():
    argvs = _k8s_argvs()
    assert sorted(argv[1] for argv in argvs) == ["reindex", "sync"]
    assert any("--every" in argv for argv in argvs)
    for argv in argvs:
        _check_indexer_command(argv)


def test_the_kubernetes_manifests_say_what_the_recipes_promise():
    manifests = _manifests()
    [cronjob] = manifests["reindex-cronjob.yaml"]
    [deployment] = manifests["sync-deployment.yaml"]
    assert (cronjob["kind"], cronjob["apiVersion"]) == ("CronJob", "batch/v1")
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    assert cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert (deployment["kind"], deployment["apiVersion"]) == ("Deployment", "apps/v1")
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    for doc in (cronjob, deployment):
        pod = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"] if doc is cronjob else doc["spec"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] >= 30  # time for the SIGTERM cleanup
        [job_volume] = [v for v in pod["volumes"] if v["name"] == "job"]
        assert job_volume["configMap"]["name"] == "indexer-job"
        [container] = pod["containers"]
        assert {"name": "job", "mountPath": "/etc/indexer", "readOnly": True} in container["volumeMounts"]


def test_the_sync_deployment_serves_metrics_and_probes_on_the_port_it_declares():
    [deployment] = _manifests()["sync-deployment.yaml"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    port = int(args[args.index("--metrics-port") + 1])
    assert args[args.index("--metrics-address") + 1] == "0.0.0.0"  # the kubelet and Prometheus reach the pod's IP
    assert container["ports"] == [{"name": "metrics", "containerPort": port}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port) and annotations["prometheus.io/path"] == "/metrics"


def test_kubernetes_secrets_come_only_from_a_secret_and_cover_every_variable_the_job_file_names():
    job = load_job(K8S_JOB_FILE)
    named = {job.source.password_env, job.target.password_env, job.target.api_key_env, job.target.bearer_env} - {None}
    for docs in _manifests().values():
        for doc in docs:
            for container in _containers(doc):
                assert "envFrom" not in container or all("secretRef" in e for e in container["envFrom"])
                env = container.get("env", [])
                assert {e["name"] for e in env} == named
                for entry in env:
                    assert "value" not in entry, f"{entry['name']} is a literal value, not a Secret reference"
                    assert entry["valueFrom"]["secretKeyRef"]["name"] == "indexer-secrets"


def test_systemd_and_cron_read_secrets_from_an_environment_file_and_hold_none():
    service = _unit("indexer-sync.service")["Service"]
    assert service["EnvironmentFile"] == "/etc/indexer/indexer.env"
    assert "Environment" not in service
    assert [e.split("=")[0] for e in _cron_entries() if re.match(r"^\w+=", e)] == ["SHELL", "PATH", "MAILTO"]
    assert ". /etc/indexer/indexer.env" in next(e for e in _cron_entries() if "indexer sync" in e)


def test_no_recipe_or_example_holds_a_secret_value():
    secretish = re.compile(r"(?i)\b(password|passwd|api_?key|token|secret)\b\s*[=:]\s*['\"]?[^\s'\"{]")
    files = [*DEPLOY.rglob("*.*"), ROOT / "examples" / "elastic-cloud.toml", K8S_JOB_FILE]
    for path in files:
        for line in path.read_text().splitlines():
            assert not secretish.search(line.split("#")[0]), f"{path.name}: {line}"


def test_the_example_job_files_for_the_recipes_are_valid():
    cloud = load_job(ROOT / "examples" / "elastic-cloud.toml")
    assert cloud.target.cloud_id and cloud.target.api_key_env == "ES_API_KEY" and cloud.target.engine == "elasticsearch"
    basic = load_job(K8S_JOB_FILE)
    assert basic.target.url.startswith("https://") and basic.target.username and basic.target.password_env
    assert basic.target.ca_certs == K8S_JOB_FILE.parent / "certs" / "root-ca.pem"
    assert tomllib.loads(K8S_JOB_FILE.read_text())["target"]["ca_certs"] == "certs/root-ca.pem"  # the ConfigMap's item path


def test_elastic_cloud_cloud_id_and_api_key_reach_the_client_as_the_recipe_says():
    """No Elastic Cloud here: this builds the client from examples/elastic-cloud.toml (no request is sent)."""
    from indexer.clients import client_options, make_client

    target = load_job(ROOT / "examples" / "elastic-cloud.toml").target
    client = make_client("elasticsearch", target, client_options(target, {"ES_API_KEY": "a2V5aWQ6c2VjcmV0"}))
    [node] = client.transport.node_pool.all()
    assert (node.config.scheme, node.config.host, node.config.port) == (
        "https", "0123456789abcdef0123456789abcdef.eu-west-1.aws.found.io", 443)
    assert client._headers["authorization"] == "ApiKey a2V5aWQ6c2VjcmV0"


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed here")
def test_the_systemd_units_pass_systemd_analyze_verify(tmp_path):
    # verify checks that ExecStart's program exists: point it at this checkout's indexer instead of /opt.
    installed_here = str(Path(sys.executable).with_name("indexer"))
    units = ("indexer-sync.service", "indexer-sync.timer", "indexer-daemon.service")
    for name in units:
        text = (DEPLOY / "systemd" / name).read_text()
        (tmp_path / name).write_text(text.replace(INSTALLED, installed_here))
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", *units],
                            cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0 and not result.stderr.strip() and not result.stdout.strip(), result.stderr


def test_the_timer_starts_the_service_every_five_minutes_and_catches_up():
    timer = _unit("indexer-sync.timer")
    assert timer["Timer"]["OnCalendar"] == "*:0/5" and timer["Timer"]["Persistent"] == "true"
    assert timer["Install"]["WantedBy"] == "timers.target"
    assert _unit("indexer-sync.service")["Service"]["Type"] == "oneshot"


@pytest.mark.skipif(not shutil.which("bash"), reason="bash is not installed here")
def test_install_completion_as_docs_recipes_says_completes_commands_in_a_new_bash(tmp_path):
    """`indexer --install-completion` run from bash (HOME is a temporary folder), then a new interactive bash
    completes `indexer re<TAB>` to reindex and reconcile."""
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path), "SHELL": "/bin/bash"}
    installed = subprocess.run(["bash", "-c", "indexer --install-completion"], capture_output=True, text=True,
                               timeout=60, cwd=tmp_path, env=env)
    assert installed.returncode == 0 and "bash completion installed" in installed.stdout, installed.stderr
    script = 'COMP_WORDS=(indexer re); COMP_CWORD=1; _indexer_completion indexer; printf "%s\\n" "${COMPREPLY[@]}"'
    completed = subprocess.run(["bash", "-i", "-c", script], capture_output=True, text=True, timeout=60,
                               cwd=tmp_path, env=env, stdin=subprocess.DEVNULL)
    assert sorted(completed.stdout.split()) == ["reconcile", "reindex"], completed.stdout + completed.stderr

"""Two checkouts on one machine never share a search node, a cluster or a PostgreSQL server.

Each "checkout" here is a folder under tmp_path given to scripts/engine.sh as ENGINE_SERVICES (and
to scripts/pg.sh as PG_DIR). Real nodes of both launchers (OpenSearch's, and Elasticsearch's, which
serves 8 and 9 alike) and a real PostgreSQL, started and stopped by the project's own scripts on free
ports; nothing here touches the nodes of the engine suites. It runs once per `make test`, not once per
engine (scripts/test-matrix.sh). A node that cannot start fails the test (never a skip).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.support import harness

REPO = Path(__file__).resolve().parents[2]
ENGINE_SH = REPO / "scripts" / "engine.sh"
PG_SH = REPO / "scripts" / "pg.sh"
# The node's folder under ENGINE_SERVICES, per engine (scripts/engine.sh).
DIRNAME = {"opensearch": "engine", "elasticsearch": "elasticsearch", "elasticsearch9": "elasticsearch9"}
HEAP = "256m"  # two nodes at once on a small machine
# Settings of the caller's own node that must not leak into the two checkouts (ENGINE_JAVA_HOME may).
ENGINE_VARS = ("ENGINE", "ENGINE_PORT", "ENGINE_DIR", "ENGINE_SERVICES", "ENGINE_HEAP", "ENGINE_TRANSPORT_PORT")
PG_VARS = ("PG_PORT", "PG_DIR", "PG_USER", "PG_DB", "PG_PASSWORD")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def engine_env(kind: str, services: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ENGINE_VARS}
    return env | {"ENGINE": kind, "ENGINE_PORT": str(port), "ENGINE_SERVICES": str(services), "ENGINE_HEAP": HEAP}


def engine_sh(kind: str, command: str, services: Path, port: int, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(ENGINE_SH), command], env=engine_env(kind, services, port), capture_output=True,
                          text=True, timeout=timeout)


def expected_cluster(kind: str, services: Path) -> str:
    """The cluster name engine.sh must give the node of this folder (unique to the folder)."""
    folder = (services / DIRNAME[kind]).resolve()
    return "indexer-" + hashlib.sha256(str(folder).encode()).hexdigest()[:12]


def java_alive(pid: int) -> bool:
    """The process is there, not a zombie, and still a java process (a reused pid would not be)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z" and b"java" in cmdline


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got {len(lines)}: {text!r}"
    return lines[0]


@pytest.mark.timeout(480)
@pytest.mark.parametrize("kind", ["opensearch", "elasticsearch"])  # the two launchers (9 is 8's)
def test_two_checkouts_get_two_private_nodes(tmp_path, kind):
    checkouts = {"A": tmp_path / "a", "B": tmp_path / "b"}
    ports = {"A": free_port(), "B": free_port()}
    while ports["B"] == ports["A"]:
        ports["B"] = free_port()
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    pids: dict[str, int] = {}
    # Both start at once (Maven, javac and the JVM start overlap): about half the time of one after the other.
    starting = {name: subprocess.Popen([str(ENGINE_SH), "start"], env=engine_env(kind, checkouts[name], ports[name]),
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                for name in checkouts}
    try:
        for name, proc in starting.items():
            out, _ = proc.communicate(timeout=300)
            if proc.returncode != 0:
                log = checkouts[name] / DIRNAME[kind] / "node.log"
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:]) if log.exists() else "(no log)"
                pytest.fail(f"engine.sh start ({kind}, checkout {name}, port {ports[name]}) exited "
                            f"{proc.returncode}:\n{out}\nlast lines of {log}:\n{tail}", pytrace=False)
            pids[name] = int((checkouts[name] / DIRNAME[kind] / "node.pid").read_text())

        # Each node is a cluster of one, under its own folder's name.
        clusters = {}
        for name, url in urls.items():
            status, nodes = harness.http("GET", "/_cat/nodes?format=json", url=url)
            assert status == 200 and len(nodes) == 1, f"checkout {name}: nodes {nodes}"
            status, health = harness.http("GET", "/_cluster/health", url=url)
            assert health["number_of_nodes"] == 1, health
            status, root = harness.http("GET", "/", url=url)
            assert harness.engine_kind_of(root) == kind, root
            clusters[name] = root["cluster_name"]
            assert clusters[name] == health["cluster_name"] == expected_cluster(kind, checkouts[name])
        assert clusters["A"] != clusters["B"]

        # What one checkout writes, the other does not see (both ways).
        for here, there in (("A", "B"), ("B", "A")):
            index = f"isolation-{here.lower()}-{uuid.uuid4().hex[:8]}"
            status, body = harness.http("PUT", f"/{index}", {"settings": {"number_of_replicas": 0}}, url=urls[here])
            assert status == 200, body
            assert harness.http("GET", f"/{index}", url=urls[here])[0] == 200
            status, body = harness.http("GET", f"/{index}", url=urls[there])
            assert status == 404, f"{index} created on {here} is visible on {there}: {body}"

        # Checkout B pointed at A's port: refused in one line (naming the way out), A's node untouched.
        refused = engine_sh(kind, "start", checkouts["B"], ports["A"])
        assert refused.returncode == 1, refused
        line = one_line(refused.stderr)
        assert clusters["A"] in line and "ENGINE_PORT" in line, line
        assert refused.stdout == ""
        assert int((checkouts["B"] / DIRNAME[kind] / "node.pid").read_text()) == pids["B"]
        status = engine_sh(kind, "status", checkouts["B"], ports["A"])
        assert status.returncode == 1 and clusters["A"] in one_line(status.stderr), status
        assert harness.http("GET", "/", url=urls["A"])[1]["cluster_name"] == clusters["A"]

        # Each checkout still reuses its own node (start is idempotent; status says up).
        for name in checkouts:
            again = engine_sh(kind, "start", checkouts[name], ports[name])
            assert again.returncode == 0 and "reusing" in again.stdout, again
            assert engine_sh(kind, "status", checkouts[name], ports[name]).returncode == 0
            assert int((checkouts[name] / DIRNAME[kind] / "node.pid").read_text()) == pids[name]
    finally:
        for proc in starting.values():
            if proc.poll() is None:  # engine.sh itself hung: stop waiting for it
                proc.kill()
                proc.wait()
        stopped: dict[str, object] = {}
        for name in checkouts:  # each one, even when the other's stop fails
            try:
                stopped[name] = engine_sh(kind, "stop", checkouts[name], ports[name], timeout=90)
            except subprocess.TimeoutExpired as exc:
                stopped[name] = exc

    for name, pid in pids.items():
        result = stopped[name]
        assert isinstance(result, subprocess.CompletedProcess) and result.returncode == 0, result
        assert not java_alive(pid), f"checkout {name}: node {pid} still running after engine.sh stop"
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", ports[name]), timeout=2).close()


def pg_env(data: Path, port: int, password: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PG_VARS}
    return env | {"PG_DIR": str(data), "PG_PORT": str(port), "PG_PASSWORD": password}


def test_engine_refuses_a_port_another_program_listens_on(tmp_path):
    # e.g. ENGINE_PORT=9300 on a machine where a node's transport port is 9300: one line, nothing started.
    # The check runs before either launcher is chosen, so one engine covers both.
    kind = "opensearch"
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        refused = engine_sh(kind, "start", tmp_path, port, timeout=60)
    assert refused.returncode == 1, refused
    assert f"127.0.0.1:{port} is in use by another program" in one_line(refused.stderr)
    assert not (tmp_path / DIRNAME[kind] / "node").exists(), "a refused start must not create the node's folder"


def pg_sh(command: str, data: Path, port: int, password: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(PG_SH), command], env=pg_env(data, port, password), capture_output=True,
                          text=True, timeout=120)


def test_pg_refuses_another_folders_server():
    # Not tmp_path: when run as root the server runs as the postgres user, who must reach the folder
    # (pytest's tmp folders are private to their owner), and the socket path must stay short.
    root = Path(tempfile.mkdtemp(prefix="indexer-pgiso-", dir="/tmp"))
    root.chmod(0o755)
    a, b = root / "a", root / "b"
    port = free_port()
    password = secrets.token_hex(12)
    try:
        started = pg_sh("start", a, port, password)
        assert started.returncode == 0, started
        assert pg_sh("status", a, port, password).returncode == 0

        # Another checkout's folder on the same port: the server there is not its own.
        status = pg_sh("status", b, port, password)
        assert status.returncode == 1, status
        assert "PG_PORT" in one_line(status.stderr)
        refused = pg_sh("start", b, port, password)
        assert refused.returncode == 1, refused
        assert "PG_PORT" in one_line(refused.stderr) and refused.stdout == ""
        assert not b.exists(), "the refused start must not create a cluster"
        assert pg_sh("status", a, port, password).returncode == 0
    finally:
        stop = pg_sh("stop", a, port, password)
        shutil.rmtree(root, ignore_errors=True)
        for folder in (a, b):  # pg.sh's start lock, one per data folder
            digest = hashlib.sha256(str(folder).encode()).hexdigest()[:12]
            Path(f"/tmp/indexer-pg-{digest}.lock").unlink(missing_ok=True)
    assert stop.returncode == 0, stop
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


CLUSTER_SH = REPO / "scripts" / "cluster.sh"


def cluster_sh(command: str, folder: Path, port: int, transport: int, nodes: int = 2) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ENGINE_VARS + ("NODES", "CLUSTER_DIR", "CLUSTER_TRANSPORT_PORT")}
    env |= {"ENGINE": "opensearch", "NODES": str(nodes), "ENGINE_PORT": str(port), "CLUSTER_DIR": str(folder),
            "CLUSTER_TRANSPORT_PORT": str(transport), "ENGINE_HEAP": HEAP}
    return subprocess.run([str(CLUSTER_SH), command], env=env, capture_output=True, text=True, timeout=300)


def refusal(done: subprocess.CompletedProcess) -> str:
    """The one line a refused cluster.sh start says (Maven's first-run notes aside)."""
    assert done.returncode == 1, done
    return one_line("\n".join(line for line in done.stderr.splitlines() if line.startswith("cluster:")))


@pytest.mark.timeout(480)
def test_two_checkouts_clusters_never_share_a_node(tmp_path):
    # Checkout A's 2-node cluster; checkout B (another folder, hence another cluster name) asks for ports
    # A holds: refused in one line each, nothing of B started; A's cluster untouched.
    a, b = tmp_path / "a", tmp_path / "b"
    port, transport = free_port(), free_port()
    while transport + 1 == port or port + 1 == transport:
        transport = free_port()
    try:
        started = cluster_sh("start", a, port, transport)
        assert started.returncode == 0, started.stderr
        assert cluster_sh("status", a, port, transport).returncode == 0
        name = harness.http("GET", "/", url=f"http://127.0.0.1:{port + 1}")[1]["cluster_name"]
        assert name == "indexer-" + hashlib.sha256(str(a.resolve()).encode()).hexdigest()[:12]

        http_taken = refusal(cluster_sh("start", b, port + 1, free_port()))
        assert f"http://127.0.0.1:{port + 1} (node 1's port) is taken by opensearch (cluster {name})" in http_taken
        transport_taken = refusal(cluster_sh("start", b, free_port(), transport + 1))
        assert f"127.0.0.1:{transport + 1} (node 1's transport port) is in use" in transport_taken
        assert not list(b.glob("node-*/node.pid")), "a refused start must not launch a node"
        assert cluster_sh("status", b, port, transport).returncode == 1  # A's nodes are not B's
        assert harness.http("GET", "/_cluster/health", url=f"http://127.0.0.1:{port}")[1]["number_of_nodes"] == 2
    finally:
        stopped = cluster_sh("stop", a, port, transport)
    assert stopped.returncode == 0, stopped
    for p in (port, port + 1):
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", p), timeout=2).close()

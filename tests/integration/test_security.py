"""Security: secrets are never echoed, row values stay off the terminal, TLS is verified by
default, credentials never go over plain http to another host, names are checked first.

Every test runs the real CLI (``harness.run_indexer``) against the real node under test
(OpenSearch, Elasticsearch 8 or 9, with the client the indexer uses for it: ``CLIENT_ENGINE``)
and the real PostgreSQL; a TLS or fault-injecting ``ProxyServer`` in front of the node
when a test needs one (every answer still comes from the node). Secrets reach the CLI
only through the environment variables a job file names.

A canary is looked for in every form it could leak in: as is, its distinctive pieces,
URL-encoded, and base64 (``Basic`` auth header, the API key) -- in stdout, stderr, every
file under the test's tmp dir (dead letters, ``--state-file``) and the ``indexer-state``
documents of the test's alias.
"""

from __future__ import annotations

import base64
import json
import ssl
import textwrap
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
import trustme

from tests.support.harness import (
    CLIENT_ENGINE, PARSING_EXCEPTION, PG, count, http, indices, pg_connect, pg_source, run_indexer, sensors_job, sql,
    sql_many,
)
from tests.support.httpproxy import ProxyServer, RecordingProxy

USER = "indexer"
PASSWORD = "c4n4ry p@ss%w0rd"
API_KEY = "AK c4n4ry@%key"
BEARER = "c4n4ry b34r3r@%tok"
SECRET_ENV = {"SEC_TEST_PASSWORD": PASSWORD, "SEC_TEST_API_KEY": API_KEY, "SEC_TEST_BEARER": BEARER}
BASIC = {"username": USER, "password_env": "SEC_TEST_PASSWORD"}
APIKEY = {"api_key_env": "SEC_TEST_API_KEY"}
AUTH = {"basic": BASIC, "api_key": APIKEY, "bearer": {"bearer_env": "SEC_TEST_BEARER"}}
ROW_CANARY = "ROWCANARY-7f3a"
REFUSED = "http://127.0.0.1:1"
NOWHERE = "http://192.0.2.10:9200"  # TEST-NET-1 (RFC 5737): only ever a config value here


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _secret_forms() -> list[str]:
    forms = {"c4n4ry", "p@ss%w0rd", "c4n4ry@%key", "b34r3r@%tok", f"{USER}:{PASSWORD}",
             _b64(f"{USER}:{PASSWORD}"), _b64(API_KEY), _b64(BEARER)}
    for secret in (PASSWORD, API_KEY, BEARER):
        forms |= {secret, quote(secret), quote(secret, safe=""), quote_plus(secret), secret.replace(" ", "%20")}
        forms |= {quote(part, safe="") for part in secret.split()}
    return sorted(forms)


SECRET_FORMS = _secret_forms()


# ------------------------------------------------------------------ helpers


def _leaks(text: str, forms=SECRET_FORMS) -> list[str]:
    return [f for f in forms if f in text]


def _state_docs(alias: str) -> list[dict]:
    """Every ``indexer-state`` document (state and lock) of ``alias``."""
    http("POST", "/indexer-state/_refresh")
    status, body = http("POST", "/indexer-state/_search", {"size": 10, "query": {"term": {"alias": alias}}})
    return [hit["_source"] for hit in body["hits"]["hits"]] if status == 200 else []


def _assert_no_secret(result, tmp_path: Path, alias: str, skip_files: tuple[Path, ...] = ()) -> None:
    where = {"stdout": result.stdout, "stderr": result.stderr}
    for path in sorted(p for p in tmp_path.rglob("*") if p.is_file() and p not in skip_files):
        where[str(path)] = path.read_bytes().decode("utf-8", "replace")
    for doc in _state_docs(alias):
        where[f"indexer-state/{alias}"] = json.dumps(doc)
    found = {name: _leaks(text) for name, text in where.items() if _leaks(text)}
    assert not found, f"secret leaked: {found}\nstderr: {result.stderr[-3000:]}"


def _assert_failed(result, code: int, debug: bool, error_class: str, *fragments: str) -> None:
    """Without --debug: the exit code and one ``error:`` line. With it: a traceback naming the error."""
    if debug:
        assert result.returncode != 0, result.stderr
        assert "Traceback" in result.stderr and error_class in result.stderr, result.stderr
        last = result.stderr.strip().splitlines()[-1]
    else:
        assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        assert "Traceback" not in result.stderr
        last = lines[0]
    for fragment in fragments:
        assert fragment in last, last


def _run_with_and_without_debug(*args: str, env: dict | None = None) -> list[tuple[bool, object]]:
    """The same command without and with --debug, side by side (for runs that take no job lock)."""
    with ThreadPoolExecutor(2) as pool:
        runs = {debug: pool.submit(run_indexer, *args, *(["--debug"] if debug else []), env=env) for debug in (False, True)}
    return [(debug, future.result()) for debug, future in runs.items()]


def _sensors_db(path: Path, rows: int = 10, start: int = 0) -> Path:
    """A small sensors table (``harness.sensors_job`` reads it); ``description`` of every row holds the row canary."""
    sql(path, "CREATE TABLE IF NOT EXISTS sensors (code TEXT PRIMARY KEY, description TEXT, site TEXT, value, "
              "date_updated TEXT)")
    sql_many(path, "INSERT INTO sensors VALUES (?, ?, 'LAB', ?, ?)", [
        (f"S{i:04d}", f"{ROW_CANARY} sensor {i}", i * 1.5, f"2024-01-01 00:{i // 60:02d}:{i % 60:02d}")
        for i in range(start, start + rows)
    ])
    return path


@pytest.fixture
def sec_alias(engine_url):
    """A fresh alias; its indices, index template and indexer-state documents are deleted afterwards."""
    name = f"tsec{uuid.uuid4().hex[:10]}"
    yield name
    for index in indices(f"{name}-*"):
        http("DELETE", f"/{index}")
    http("DELETE", f"/_index_template/{name}")
    for doc_id in (name, f"lock:{name}"):
        http("DELETE", f"/indexer-state/_doc/{doc_id}?refresh=true")


@pytest.fixture
def db(tmp_path) -> Path:
    return _sensors_db(tmp_path / "sensors.db")


# ------------------------------------------------------------------ canary secrets


@pytest.mark.parametrize("case", ["encoded-userinfo", "raw-userinfo", "job-file-url", "bootstrap-env-url"])
def test_a_url_with_credentials_is_refused_without_echoing_it(tmp_path, sec_alias, db, case):
    encoded = f"http://{USER}:{quote(PASSWORD, safe='')}@127.0.0.1:9200"
    raw = f"http://{USER}:{PASSWORD}@127.0.0.1:9200"
    job_url = encoded if case == "job-file-url" else "http://127.0.0.1:9200"
    job = sensors_job(tmp_path, db, {"url": job_url, **APIKEY}, sec_alias)
    env = dict(SECRET_ENV)
    if case != "job-file-url":
        env["INDEXER_URL"] = raw if case == "raw-userinfo" else encoded
    args = ("bootstrap", "--job", str(job), "--check") if case == "bootstrap-env-url" else ("reindex", str(job))
    for debug, result in _run_with_and_without_debug(*args, env=env):
        _assert_failed(result, 2, debug, "ConfigError", "target.url" if case == "job-file-url" else "INDEXER_URL",
                       "without credentials")
        # The job file of "job-file-url" holds the URL on purpose: what is checked is everything else.
        _assert_no_secret(result, tmp_path, sec_alias, skip_files=(job,) if case == "job-file-url" else ())
    assert indices(f"{sec_alias}-*") == []


@pytest.mark.parametrize("engine, auth", [
    ("opensearch", "basic"), ("opensearch", "bearer"), ("elasticsearch", "api_key"), ("elasticsearch", "basic"),
])
def test_a_refused_connection_does_not_echo_credentials(tmp_path, sec_alias, db, engine, auth):
    job = sensors_job(tmp_path, db, {"url": REFUSED, "engine": engine, **AUTH[auth]}, sec_alias)
    state = tmp_path / "state.json"
    for debug, result in _run_with_and_without_debug("reindex", str(job), "--state-file", str(state), env=SECRET_ENV):
        _assert_failed(result, 1, debug, "EngineError", f"cannot reach the cluster at {REFUSED}", "connection refused")
        _assert_no_secret(result, tmp_path, sec_alias)


@pytest.mark.parametrize("auth, fault", [
    ("basic", "every request"), ("api_key", "bulk only"), ("api_key", "every request"), ("basic", "bulk only"),
])
def test_a_401_from_the_cluster_does_not_echo_credentials(tmp_path, engine_url, sec_alias, db, auth, fault):
    engine = CLIENT_ENGINE
    with RecordingProxy(upstream=engine_url) as proxy:
        proxy.faults.request_status = 401
        if fault == "every request":
            proxy.faults.request_status_match = lambda method, path: True
        job = sensors_job(tmp_path, db, {"url": proxy.url, "engine": engine, **AUTH[auth]}, sec_alias)
        if fault == "every request":  # no lock is ever taken: both runs side by side
            runs = _run_with_and_without_debug("reindex", str(job), env=SECRET_ENV)
        else:
            runs = [(debug, run_indexer("reindex", str(job), *(["--debug"] if debug else []), env=SECRET_ENV))
                    for debug in (False, True)]
        for debug, result in runs:
            _assert_failed(result, 1, debug, "ApiStatusError", "HTTP 401")
            _assert_no_secret(result, tmp_path, sec_alias)
    sent = f"Basic {_b64(f'{USER}:{PASSWORD}')}" if auth == "basic" else f"ApiKey {API_KEY}"
    assert set(proxy.authorizations) == {sent}  # the canary really was sent, to the cluster only
    assert indices(f"{sec_alias}-*") == []  # a failed reindex leaves nothing behind
    if fault == "bulk only":  # the run got far enough to record its failure in the cluster
        (state,) = [d["state"] for d in _state_docs(sec_alias) if "state" in d]
        assert "HTTP 401" in state["last_run"]["error"]


def test_a_failed_postgres_login_does_not_echo_the_password(tmp_path, engine_url, sec_alias):
    pg_connect().close()  # PostgreSQL is up: the failure below is the login, not the connection
    source = {**pg_source(), "password_env": "SEC_TEST_PASSWORD"}
    job = sensors_job(tmp_path, "sensors", {"url": engine_url, "engine": CLIENT_ENGINE}, sec_alias, source=source,
                      query="SELECT 1 AS code")
    # state in a file without --debug, in the cluster with it (one after the other: the second
    # would take the first's fresh index for an orphan)
    for debug, args in ((False, ["--state-file", str(tmp_path / "state.json")]), (True, ["--debug"])):
        result = run_indexer("reindex", str(job), *args, env=SECRET_ENV)
        _assert_failed(result, 1, debug, "SourceError", "password authentication failed")
        _assert_no_secret(result, tmp_path, sec_alias)
    assert "password authentication failed" in (tmp_path / "state.json").read_text()
    (state,) = [d["state"] for d in _state_docs(sec_alias) if "state" in d]
    assert "password authentication failed" in state["last_run"]["error"]


@pytest.mark.parametrize("secret", ["x", "dex", "54329"])
def test_a_short_wrong_password_is_never_found_by_its_position_in_the_error(tmp_path, engine_url, sec_alias, secret):
    """Masking the secret's text wherever it occurred showed it by position: user "in***er", port ***."""
    pg_connect().close()
    source = {**pg_source(), "password_env": "SHORT_PASSWORD"}
    job = sensors_job(tmp_path, "sensors", {"url": engine_url, "engine": CLIENT_ENGINE}, sec_alias, source=source,
                      query="SELECT 1 AS code")
    result = run_indexer("reindex", str(job), env={"SHORT_PASSWORD": secret})
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "password authentication failed" in result.stderr
    assert f'user "{PG["user"]}"' in result.stderr and str(PG["port"]) in result.stderr  # nothing masked in them
    assert "***" not in result.stderr


# ------------------------------------------------------------------ row values stay off the terminal


def test_row_values_never_reach_the_terminal_even_when_the_cluster_refuses_a_row(tmp_path, engine_url, sec_alias):
    db = _sensors_db(tmp_path / "sensors.db", rows=30)
    sql(db, "UPDATE sensors SET value = ? WHERE code = 'S0007'", ROW_CANARY)
    status, body = http("PUT", f"/_index_template/{sec_alias}", {
        "index_patterns": [f"{sec_alias}-*"], "priority": 990,
        "template": {"mappings": {"properties": {"value": {"type": "double"}}}},
    })
    assert status == 200, body
    target = {"url": engine_url, "engine": CLIENT_ENGINE}
    # 1 dead letter in 30 rows: within budget with a rate allowed for a run this small (issue 8)
    job = sensors_job(tmp_path, db, target, sec_alias, watermark="date_updated", lookback=0, max_error_rate=0.1)
    dead = tmp_path / "job.dead-letters.ndjson"

    def check(result, code: int) -> None:
        assert result.returncode == code, (result.stdout, result.stderr)
        assert ROW_CANARY not in result.stderr, result.stderr
        assert ROW_CANARY not in result.stdout, result.stdout

    reindex = run_indexer("reindex", str(job))
    check(reindex, 3)
    assert count(sec_alias) == 29
    assert [json.loads(line)["key"] for line in dead.read_text().splitlines()] == [{"code": "S0007"}]

    # a sync that meets one more refused row, and rows that change
    sql(db, "INSERT INTO sensors VALUES ('S0100', ?, 'LAB', ?, '2024-02-01 00:00:00')", f"{ROW_CANARY} new", ROW_CANARY)
    sql(db, "UPDATE sensors SET description = description || ' v2', date_updated = '2024-02-01 00:00:01' WHERE code = 'S0001'")
    check(run_indexer("sync", str(job)), 3)
    assert [json.loads(line)["key"]["code"] for line in dead.read_text().splitlines()] == ["S0007", "S0100"]
    assert count(sec_alias) == 29

    # over the error budget the run fails with one line naming the first failure: still no value
    sql(db, "INSERT INTO sensors VALUES ('S0101', 'x', 'LAB', ?, '2024-03-01 00:00:00')", ROW_CANARY)
    job.write_text(job.read_text().replace("[job]\n", "[job]\nmax_errors = 0\n"))
    over = run_indexer("sync", str(job))
    check(over, 1)
    assert "failed for good" in over.stderr and PARSING_EXCEPTION in over.stderr


def test_a_database_error_does_not_put_row_values_on_the_terminal(tmp_path, engine_url, sec_alias, pg_tables):
    table = pg_tables.create("code text PRIMARY KEY, description text", [("S1", f"{ROW_CANARY} sensor 1")], prefix="sec")
    job = sensors_job(tmp_path, table, {"url": engine_url, "engine": CLIENT_ENGINE}, sec_alias,
                      query=f"SELECT code, description::int AS n FROM {table}")
    result = run_indexer("reindex", str(job))
    assert result.returncode == 1, result.stderr
    assert "invalid input syntax" in result.stderr
    assert ROW_CANARY not in result.stderr, result.stderr


# ------------------------------------------------------------------ TLS


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    """A trustme CA, its PEM file, and server contexts: one valid for 127.0.0.1, one for another host."""
    ca = trustme.CA()
    folder = tmp_path_factory.mktemp("tls")
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    contexts = {}
    for name, hosts in (("loopback", ("127.0.0.1", "localhost")), ("other-host", ("search.example.test",))):
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(*hosts).configure_cert(ctx)
        contexts[name] = ctx
    return {"ca_pem": folder / "ca.pem", **contexts}


@pytest.fixture(scope="module")
def tls_proxy(engine_url, tls):
    """The real node behind https on loopback, with the client the indexer uses for it."""
    with ProxyServer(upstream=engine_url, ssl_context=tls["loopback"]) as proxy:
        proxy.engine = CLIENT_ENGINE
        yield proxy


def _tls_job(tmp_path, db, alias, proxy, **target) -> Path:
    return sensors_job(tmp_path, db, {"url": proxy.url, "engine": proxy.engine, **BASIC, **target}, alias)


def test_tls_an_unknown_ca_is_refused_by_default(tmp_path, sec_alias, db, tls_proxy):
    assert tls_proxy.url.startswith("https://127.0.0.1:")
    result = run_indexer("reindex", str(_tls_job(tmp_path, db, sec_alias, tls_proxy)), env=SECRET_ENV)
    _assert_failed(result, 1, False, "EngineError", "TLS certificate not trusted", "target.ca_certs")
    _assert_no_secret(result, tmp_path, sec_alias)
    assert indices(f"{sec_alias}-*") == []


def test_tls_ca_certs_makes_the_certificate_trusted(tmp_path, sec_alias, db, tls_proxy, tls):
    (tmp_path / "ca.pem").write_bytes(tls["ca_pem"].read_bytes())
    job = _tls_job(tmp_path, db, sec_alias, tls_proxy, ca_certs="ca.pem")  # relative to the job file
    result = run_indexer("reindex", str(job), env=SECRET_ENV)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert count(sec_alias) == 10


@pytest.mark.parametrize("engine, host", [
    ("opensearch", "127.0.0.1"),
    ("opensearch", "localhost"),
    ("elasticsearch", "localhost"),
    pytest.param("elasticsearch", "127.0.0.1"),
])
def test_tls_the_certificate_must_name_the_host(tmp_path, engine_url, sec_alias, db, tls, engine, host):
    with ProxyServer(upstream=engine_url, ssl_context=tls["other-host"]) as proxy:
        url = proxy.url.replace("127.0.0.1", host)
        job = sensors_job(tmp_path, db, {"url": url, "engine": engine, "ca_certs": str(tls["ca_pem"])}, sec_alias)
        result = run_indexer("reindex", str(job))
    _assert_failed(result, 1, False, "EngineError", "TLS certificate not trusted")
    assert indices(f"{sec_alias}-*") == []


def test_tls_verify_certs_false_works_and_warns_loudly(tmp_path, sec_alias, db, tls_proxy):
    job = _tls_job(tmp_path, db, sec_alias, tls_proxy, verify_certs=False)
    result = run_indexer("reindex", str(job), env=SECRET_ENV)
    assert result.returncode == 0, result.stderr
    assert "WARNING" in result.stderr and "TLS certificate verification is OFF" in result.stderr
    assert count(sec_alias) == 10
    _assert_no_secret(result, tmp_path, sec_alias)


# ------------------------------------------------------------------ no credentials over plain http to another host

# Loaded into the CLI process (PYTHONPATH): records every socket connect and blocks any to a
# non-loopback address before the system call, so no packet can leave even if the check under
# test were broken.
_NETWORK_GUARD = textwrap.dedent('''
    import errno, ipaddress, os, socket
    _LOG = os.environ["SEC_TEST_CONNECT_LOG"]
    with open(_LOG, "a") as fh:
        fh.write("guard loaded\\n")
    def _guarded(original):
        def connect(self, address):
            host = address[0] if isinstance(address, tuple) else ""
            with open(_LOG, "a") as fh:
                fh.write(f"connect {host}\\n")
            try:
                loopback = ipaddress.ip_address(host.split("%")[0]).is_loopback
            except ValueError:
                loopback = not host or host == "localhost"
            if not loopback:
                raise PermissionError(errno.EPERM, "blocked by the test: connect to a non-loopback address")
            return original(self, address)
        return connect
    socket.socket.connect = _guarded(socket.socket.connect)
    socket.socket.connect_ex = _guarded(socket.socket.connect_ex)
''')


@pytest.mark.parametrize("engine, auth, via", [
    ("opensearch", "basic", "job file"), ("elasticsearch", "api_key", "job file"),
    ("auto", "bearer", "INDEXER_URL"), ("elasticsearch", "basic", "INDEXER_URL"),
])
def test_credentials_are_never_sent_over_plain_http_to_another_host(tmp_path, sec_alias, db, engine, auth, via):
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(_NETWORK_GUARD)
    log = tmp_path / "connects.log"
    url = NOWHERE if via == "job file" else "http://127.0.0.1:9200"
    job = sensors_job(tmp_path, db, {"url": url, "engine": engine, **AUTH[auth]}, sec_alias)
    env = {**SECRET_ENV, "PYTHONPATH": str(guard), "SEC_TEST_CONNECT_LOG": str(log)}
    if via == "INDEXER_URL":
        env["INDEXER_URL"] = NOWHERE
    started = time.monotonic()
    result = run_indexer("reindex", str(job), env=env, timeout=30)
    elapsed = time.monotonic() - started
    _assert_failed(result, 2, False, "ConfigError", "plain http://", "https://")
    assert log.read_text().splitlines() == ["guard loaded"]  # the guard ran, and nothing connected anywhere
    assert elapsed < 4, elapsed  # refused up front (a normal run takes ~0.5 s): no connect was waited for
    _assert_no_secret(result, tmp_path, sec_alias)


# ------------------------------------------------------------------ names are checked before any request


@pytest.fixture
def counting_proxy(engine_url):
    with ProxyServer(upstream=engine_url) as proxy:
        yield proxy


@pytest.mark.parametrize("command, bad", [("reindex", "Tsec-upper"), ("sync", "tsec*star"), ("status", "tsec upper")])
def test_an_invalid_alias_is_refused_before_any_request(tmp_path, db, counting_proxy, command, bad):
    job = sensors_job(tmp_path, db, {"url": counting_proxy.url, "engine": CLIENT_ENGINE}, bad, watermark="date_updated")
    result = run_indexer(command, str(job))
    _assert_failed(result, 2, False, "ConfigError", "job.alias")
    assert sum(counting_proxy.stats.requests.values()) == 0
    assert _state_docs(bad) == []


def _mappings_with(tmp_path: Path, kind: str, name: str) -> Path:
    root = tmp_path / "mappings"
    (root / kind).mkdir(parents=True)
    body = ({"index_patterns": ["tsec-never-*"], "priority": 7, "template": {"settings": {"number_of_shards": 1}}}
            if kind == "index" else {"template": {"settings": {"number_of_shards": 1}}})
    (root / kind / f"{name}.json").write_text(json.dumps(body))
    # a valid template beside it must not be written either
    (root / kind / "tsec-valid-never-written.json").write_text(json.dumps(body))
    return root


@pytest.mark.parametrize("kind, name", [("index", "Tsec-Upper"), ("component", "tsec*star")])
def test_an_invalid_template_file_name_writes_nothing(tmp_path, counting_proxy, kind, name):
    root = _mappings_with(tmp_path, kind, name)
    result = run_indexer("bootstrap", "--mappings", str(root), "--url", counting_proxy.url, "--engine", CLIENT_ENGINE)
    _assert_failed(result, 2, False, "ConfigError", "template name", f"{name}.json")
    assert set(counting_proxy.stats.requests) <= {"root"}  # at most the hello, GET /
    path = "/_index_template/" if kind == "index" else "/_component_template/"
    assert http("GET", path + "tsec-valid-never-written")[0] == 404


def test_template_file_names_are_checked_before_any_request(tmp_path, counting_proxy):
    root = _mappings_with(tmp_path, "index", "Tsec-Upper")
    result = run_indexer("bootstrap", "--mappings", str(root), "--url", counting_proxy.url, "--engine", CLIENT_ENGINE)
    _assert_failed(result, 2, False, "ConfigError", "template name")
    assert sum(counting_proxy.stats.requests.values()) == 0


# ------------------------------------------------------------------ bugs found on the way


@pytest.mark.parametrize("engine", ["opensearch", "elasticsearch"])
def test_two_auth_methods_at_once_are_a_config_error(tmp_path, engine_url, sec_alias, db, engine):
    # refused before any request, so each client path is checked against whichever node runs
    job = sensors_job(tmp_path, db, {"url": engine_url, "engine": engine, **BASIC, **APIKEY}, sec_alias)
    result = run_indexer("bootstrap", "--job", str(job), "--check", env=SECRET_ENV)
    _assert_failed(result, 2, False, "ConfigError", "password_env", "api_key_env")
    _assert_no_secret(result, tmp_path, sec_alias)


def test_debug_keeps_the_exit_code(tmp_path, db):
    job = sensors_job(tmp_path, db, {"url": REFUSED}, "Tsec-upper")
    result = run_indexer("reindex", str(job), "--debug")
    assert "Traceback" in result.stderr and "ConfigError" in result.stderr
    assert result.returncode == 2

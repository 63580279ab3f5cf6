"""`indexer bootstrap` installs templates from files idempotently, and --check/--dry-run only look."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.support.harness import REPO, delete_indices, http, run_indexer, sensors_job


@pytest.fixture
def mappings(tmp_path, engine_url):
    """The project's templates under unique names, so tests never touch the demo's templates."""
    tag = uuid.uuid4().hex[:8]
    root = tmp_path / "mappings"
    names = {}
    for kind in ("component", "index"):
        (root / kind).mkdir(parents=True)
        for src in sorted((REPO / "mappings" / kind).glob("*.json")):
            names[src.stem] = f"t{tag}-{src.stem}"
    for kind in ("component", "index"):
        for src in sorted((REPO / "mappings" / kind).glob("*.json")):
            body = json.loads(src.read_text())
            if kind == "index":
                body["composed_of"] = [names[c] for c in body["composed_of"]]
                body["index_patterns"] = [f"t{tag}-*"]
            (root / kind / f"{names[src.stem]}.json").write_text(json.dumps(body, indent=2))
    yield root, tag
    for path in root.glob("index/*.json"):
        http("DELETE", f"/_index_template/{path.stem}")
    for path in root.glob("component/*.json"):
        http("DELETE", f"/_component_template/{path.stem}")


def _bootstrap(root, target, *flags):
    return run_indexer("bootstrap", "--mappings", str(root), "--url", target["url"],
                       "--engine", target["engine"], "--json", *flags)


def _actions(result):
    assert result.returncode in (0, 1), result.stderr
    return {t["name"].split("-", 1)[1]: t["action"] for t in json.loads(result.stdout)["templates"]}


def test_bootstrap_creates_then_reports_unchanged(mappings, target):
    root, tag = mappings
    first = _bootstrap(root, target)
    assert first.returncode == 0, first.stderr
    assert _actions(first) == {"sensors-mappings": "created", "sensors-settings": "created", "sensors": "created"}
    order = [t["kind"] for t in json.loads(first.stdout)["templates"]]
    assert order == ["component", "component", "index"]

    second = _bootstrap(root, target)
    assert set(_actions(second).values()) == {"unchanged"}
    check = _bootstrap(root, target, "--check")
    assert check.returncode == 0 and json.loads(check.stdout)["drift"] is False

    status, body = http("GET", f"/_index_template/t{tag}-sensors")
    assert status == 200 and body["index_templates"][0]["index_template"]["index_patterns"] == [f"t{tag}-*"]


def test_check_and_dry_run_detect_a_changed_file_and_write_nothing(mappings, target):
    root, tag = mappings
    assert _bootstrap(root, target).returncode == 0
    path = root / "component" / f"t{tag}-sensors-settings.json"
    body = json.loads(path.read_text())
    body["template"]["settings"]["refresh_interval"] = "30s"
    path.write_text(json.dumps(body))

    check = _bootstrap(root, target, "--check")
    assert check.returncode == 1
    assert _actions(check)["sensors-settings"] == "updated"

    dry = run_indexer("bootstrap", "--mappings", str(root), "--url", target["url"], "--engine", target["engine"], "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would update" in dry.stdout
    assert '+      "index.refresh_interval": "30s"' in dry.stdout
    status, stored = http("GET", f"/_component_template/t{tag}-sensors-settings")
    assert stored["component_templates"][0]["component_template"]["template"]["settings"]["index"]["refresh_interval"] == "1s"

    applied = _bootstrap(root, target)
    assert _actions(applied)["sensors-settings"] == "updated"
    assert _bootstrap(root, target, "--check").returncode == 0


def test_the_index_template_applies_to_reindexed_indices(mappings, target, tmp_path, sqlite_sensors):
    root, tag = mappings
    assert _bootstrap(root, target).returncode == 0
    alias = f"t{tag}-sensors"
    job = sensors_job(tmp_path, sqlite_sensors, target, alias)
    try:
        result = run_indexer("reindex", str(job), "--json")
        assert result.returncode == 0, result.stderr
        index = json.loads(result.stdout)["index"]
        _, mapping = http("GET", f"/{index}/_mapping")
        props = mapping[index]["mappings"]["properties"]
        assert props["code"]["type"] == "keyword" and props["date_updated"]["type"] == "date"
        _, settings = http("GET", f"/{index}/_settings")
        # restored from the template after the load (the load runs with -1 and 0 replicas)
        assert settings[index]["settings"]["index"]["refresh_interval"] == "1s"
        assert settings[index]["settings"]["index"]["number_of_replicas"] == "0"
    finally:
        delete_indices(f"{alias}-*")


def test_a_broken_template_file_is_one_clear_error(tmp_path, engine_url):
    root = tmp_path / "mappings"
    (root / "index").mkdir(parents=True)
    (root / "index" / "broken.json").write_text('{"index_patterns": ["x-*"],\n  "priority": }')
    result = run_indexer("bootstrap", "--mappings", str(root))
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: ") and "broken.json" in result.stderr and "line 2" in result.stderr


def test_index_patterns_written_as_one_string_is_unchanged_on_the_second_bootstrap(mappings, target):
    # The cluster stores the one pattern as a list; the file's string means the same (issue 8, item 11).
    root, tag = mappings
    path = root / "index" / f"t{tag}-sensors.json"
    body = json.loads(path.read_text())
    body["index_patterns"] = f"t{tag}-*"
    path.write_text(json.dumps(body))
    assert _bootstrap(root, target).returncode == 0
    second = _bootstrap(root, target)
    assert second.returncode == 0 and set(_actions(second).values()) == {"unchanged"}
    check = _bootstrap(root, target, "--check")
    assert check.returncode == 0 and json.loads(check.stdout)["drift"] is False
    status, stored = http("GET", f"/_index_template/t{tag}-sensors")
    assert stored["index_templates"][0]["index_template"]["index_patterns"] == [f"t{tag}-*"]


def test_what_the_cluster_adds_to_a_stored_template_is_not_drift(mappings, target):
    # Elasticsearch 9 stamps templates with created_date_millis / modified_date_millis; nothing the
    # cluster adds on its own may make `bootstrap --check` report drift right after `bootstrap`.
    root, tag = mappings
    assert _bootstrap(root, target).returncode == 0
    check = _bootstrap(root, target, "--check")
    assert check.returncode == 0, check.stdout
    for kind, path in (("component", "_component_template"), ("index", "_index_template")):
        for file in (root / kind).glob("*.json"):
            status, stored = http("GET", f"/{path}/{file.stem}")
            assert status == 200
            (entry,) = stored[f"{kind}_templates"]
            added = set(entry[f"{kind}_template"]) - set(json.loads(file.read_text()))
            assert added <= {"created_date_millis", "modified_date_millis"}, added


# ---------------------------------------------------------------- every file validated before any is installed (issue 17, 5.2)


def _installed(tag) -> dict[str, list[str]]:
    """The templates of this test (named t<tag>-...) the cluster holds."""
    found = {}
    for kind, path in (("component", "_component_template"), ("index", "_index_template")):
        status, body = http("GET", f"/{path}/t{tag}-*")
        found[kind] = sorted(t["name"] for t in (body or {}).get(f"{kind}_templates", [])) if status == 200 else []
    return found


def _edit(root, kind, name, change):
    path = root / kind / f"{name}.json"
    body = json.loads(path.read_text())
    change(body)
    path.write_text(json.dumps(body))
    return path


def _one_error_line(result, path, *words):
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr
    assert str(path) in result.stderr, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("flags", [(), ("--check",), ("--dry-run",)])
@pytest.mark.parametrize("bad, words", [
    ({"index": {"number_of_shards": "many"}}, ["number_of_shards"]),                  # a bad setting
    ({"index": {"no_such_setting": 1}}, ["unknown setting"]),                        # an unknown setting
    ({"mappings": {"properties": {"code": {"type": "no_such_type"}}}}, ["no_such_type"]),  # a bad type
    ({"mappings": {"properties": {"_id": {"type": "keyword"}}}}, ["_id", "metadata field"]),  # a metadata field
])
def test_one_bad_component_file_installs_nothing_and_is_one_line_naming_it(mappings, target, flags, bad, words):
    root, tag = mappings
    # the bad one sorts last among the component files, so a bootstrap that installs as it goes gets far
    path = root / "component" / f"t{tag}-zz-bad.json"
    template = {"settings": bad["index"]} if "index" in bad else bad
    path.write_text(json.dumps({"template": template}))
    result = _bootstrap(root, target, *flags)
    _one_error_line(result, path, *words)
    assert _installed(tag) == {"component": [], "index": []}


def test_an_index_template_whose_own_template_the_engine_refuses_installs_nothing(mappings, target):
    root, tag = mappings
    path = _edit(root, "index", f"t{tag}-sensors", lambda body: body.update(
        template={"mappings": {"properties": {"site": {"type": "no_such_type"}}}}))
    _one_error_line(_bootstrap(root, target), path, "no_such_type")
    assert _installed(tag) == {"component": [], "index": []}


def test_a_composed_of_name_neither_in_the_files_nor_in_the_cluster_installs_nothing(mappings, target):
    root, tag = mappings
    path = _edit(root, "index", f"t{tag}-sensors", lambda body: body["composed_of"].append(f"t{tag}-nowhere"))
    _one_error_line(_bootstrap(root, target, "--check"), path, f"t{tag}-nowhere")
    _one_error_line(_bootstrap(root, target), path, f"t{tag}-nowhere")
    assert _installed(tag) == {"component": [], "index": []}


def test_components_already_in_the_cluster_are_composed_from_the_cluster(mappings, target):
    root, tag = mappings
    assert _bootstrap(root, target).returncode == 0
    for path in (root / "component").glob("*.json"):
        path.unlink()  # the index template now composes the cluster's components
    _edit(root, "index", f"t{tag}-sensors", lambda body: body.update(priority=101))
    result = _bootstrap(root, target)
    assert result.returncode == 0, result.stderr
    assert _actions(result) == {"sensors": "updated"}


def test_an_index_template_with_the_priority_and_patterns_of_another_installs_nothing(mappings, target):
    root, tag = mappings
    other = f"t{tag}-other"
    assert http("PUT", f"/_index_template/{other}", {"index_patterns": [f"t{tag}-*"], "priority": 100})[0] == 200
    try:
        path = root / "index" / f"t{tag}-sensors.json"
        _edit(root, "index", f"t{tag}-sensors", lambda body: body.update(index_patterns=[f"t{tag}-sens*"]))
        _one_error_line(_bootstrap(root, target), path, other, "same priority")
        assert _installed(tag) == {"component": [], "index": [other]}
    finally:
        http("DELETE", f"/_index_template/{other}")


def test_a_component_the_index_template_may_miss_is_no_validation_error(mappings, target, engine_kind):
    root, tag = mappings
    optional = f"t{tag}-optional"
    _edit(root, "index", f"t{tag}-sensors", lambda body: body.update(
        composed_of=[*body["composed_of"], optional], ignore_missing_component_templates=[optional]))
    result = _bootstrap(root, target)
    assert "neither in" not in result.stderr, result.stderr
    if engine_kind == "opensearch":
        # OpenSearch 2 has no ignore_missing_component_templates: the engine itself refuses the field
        assert result.returncode == 1 and "ignore_missing_component_templates" in result.stderr, result.stderr
    else:
        assert result.returncode == 0, result.stderr
        assert _installed(tag)["index"] == [f"t{tag}-sensors"]

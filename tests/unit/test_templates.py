"""Template files: loading order, validation, and comparing with the cluster's shape (indexer.templates)."""

import json
from pathlib import Path

import pytest

from indexer.errors import ConfigError
from indexer.templates import diff, load_templates, normalise

COMPONENT = {"template": {"settings": {"number_of_shards": 1}, "mappings": {"properties": {"id": {"type": "keyword"}}}}}
INDEX = {"index_patterns": ["sensors-*"], "composed_of": ["base"], "template": {"settings": {"refresh_interval": "1s"}}}


def write(root: Path, kind: str, name: str, body) -> Path:
    path = root / kind / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body if isinstance(body, str) else json.dumps(body, indent=2), encoding="utf-8")
    return path


# ---------------------------------------------------------------- load_templates


def test_component_templates_come_first_then_index_templates_each_by_name(tmp_path):
    write(tmp_path, "index", "sensors", INDEX)
    write(tmp_path, "index", "alerts", {**INDEX, "index_patterns": ["alerts-*"]})
    write(tmp_path, "component", "base", COMPONENT)
    write(tmp_path, "component", "analysis", COMPONENT)
    found = [(t.kind, t.name) for t in load_templates(tmp_path)]
    assert found == [("component", "analysis"), ("component", "base"), ("index", "alerts"), ("index", "sensors")]


def test_template_body_is_the_file_content(tmp_path):
    write(tmp_path, "index", "sensors", INDEX)
    (template,) = load_templates(tmp_path)
    assert template.body == INDEX and template.path == tmp_path / "index" / "sensors.json"


def test_invalid_json_is_reported_with_line_and_column(tmp_path):
    write(tmp_path, "component", "base", '{\n  "template": {\n    "settings": ,\n  }\n}')
    with pytest.raises(ConfigError, match=r"base\.json: not valid JSON: line 3 column 17"):
        load_templates(tmp_path)


def test_index_template_without_index_patterns_is_refused(tmp_path):
    write(tmp_path, "index", "sensors", {"template": {}})
    with pytest.raises(ConfigError, match=r"sensors\.json: an index template needs index_patterns"):
        load_templates(tmp_path)


def test_component_template_without_a_template_object_is_refused(tmp_path):
    write(tmp_path, "component", "base", {"settings": {}})
    with pytest.raises(ConfigError, match="needs a template object"):
        load_templates(tmp_path)


def test_a_file_name_that_is_not_a_valid_template_name_is_refused(tmp_path):
    write(tmp_path, "component", "Base", COMPONENT)
    with pytest.raises(ConfigError, match="template name 'Base'"):
        load_templates(tmp_path)


def test_a_folder_without_template_files_is_refused(tmp_path):
    (tmp_path / "component").mkdir()
    with pytest.raises(ConfigError, match="no template files"):
        load_templates(tmp_path)


def test_a_missing_mappings_folder_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="mappings folder not found"):
        load_templates(tmp_path / "nope")


# ---------------------------------------------------------------- normalise


FILE_SETTINGS = {"template": {"settings": {"number_of_shards": 1, "index": {"refresh_interval": "1s"}}}}
CLUSTER_SETTINGS = {"template": {"settings": {"index": {"number_of_shards": "1", "refresh_interval": "1s"}}}}


def test_file_settings_equal_the_cluster_shape_of_the_same_settings():
    assert normalise(FILE_SETTINGS) == normalise(CLUSTER_SETTINGS)


def test_dotted_and_boolean_settings_equal_the_cluster_shape():
    file = {"template": {"settings": {"index.mapping.coerce": False, "number_of_replicas": 0}}}
    cluster = {"template": {"settings": {"index": {"mapping": {"coerce": "false"}, "number_of_replicas": "0"}}}}
    assert normalise(file) == normalise(cluster)


def test_empty_parts_the_cluster_adds_do_not_count_as_changes():
    file = {"index_patterns": ["sensors-*"], "template": {"settings": {"refresh_interval": "1s"}}}
    cluster = {"index_patterns": ["sensors-*"], "composed_of": [], "template": {"settings": {"index": {"refresh_interval": "1s"}}, "mappings": {}}}
    assert normalise(file) == normalise(cluster)


def test_a_changed_setting_is_a_difference():
    changed = {"template": {"settings": {"index": {"number_of_shards": "2", "refresh_interval": "1s"}}}}
    assert normalise(FILE_SETTINGS) != normalise(changed)


def test_a_changed_mapping_is_a_difference():
    keyword = {"template": {"mappings": {"properties": {"id": {"type": "keyword"}}}}}
    long_ = {"template": {"mappings": {"properties": {"id": {"type": "long"}}}}}
    assert normalise(keyword) != normalise(long_)


def test_normalise_does_not_change_its_argument():
    body = json.loads(json.dumps(FILE_SETTINGS))
    normalise(body)
    assert body == FILE_SETTINGS


# ---------------------------------------------------------------- diff


def test_diff_is_empty_when_the_cluster_matches_the_file():
    assert diff("component", "base", CLUSTER_SETTINGS, FILE_SETTINGS) == ""


def test_diff_shows_the_changed_setting_from_cluster_to_file():
    cluster = {"template": {"settings": {"index": {"number_of_shards": "1", "refresh_interval": "30s"}}}}
    text = diff("index", "sensors", cluster, FILE_SETTINGS)
    lines = text.splitlines()
    assert lines[0] == "--- cluster index template sensors"
    assert lines[1] == "+++ mappings/index/sensors.json"
    assert '-      "index.refresh_interval": "30s"' in lines
    assert '+      "index.refresh_interval": "1s"' in lines
    assert not any("number_of_shards" in line for line in lines if line[:1] in "+-" and line[:3] not in ("+++", "---"))


def test_diff_against_a_missing_template_adds_every_line():
    text = diff("component", "base", None, COMPONENT)
    body = [line for line in text.splitlines()[3:]]
    assert body and all(line.startswith("+") for line in body)
    assert '+      "index.number_of_shards": "1"' in body


# ---------------------------------------------------------------- what the cluster adds or reshapes


def test_the_timestamps_elasticsearch_9_adds_are_not_a_difference():
    # GET /_component_template/x and /_index_template/x on Elasticsearch 9.2 return these beside what was sent
    stamps = {"created_date_millis": 1795790205265, "modified_date_millis": 1795790205319,
              "created_date": "2026-11-27T14:36:45.265Z", "modified_date": "2026-11-27T14:36:45.319Z"}
    assert normalise({**CLUSTER_SETTINGS, **stamps}) == normalise(FILE_SETTINGS)
    assert normalise({**INDEX, "created_date_millis": 1}) == normalise(INDEX)
    assert diff("component", "base", {**CLUSTER_SETTINGS, **stamps}, FILE_SETTINGS) == ""


def test_a_real_change_beside_the_timestamps_is_still_a_difference():
    cluster = {**INDEX, "priority": 5, "created_date_millis": 1, "modified_date_millis": 2}
    assert normalise(cluster) != normalise({**INDEX, "priority": 6})
    text = diff("index", "sensors", cluster, {**INDEX, "priority": 6})
    assert "millis" not in text and '-  "priority": 5,' in text.splitlines()


def test_index_patterns_written_as_one_string_equal_the_list_the_cluster_stores():
    file = {**INDEX, "index_patterns": "sensors-*"}
    cluster = {**INDEX, "index_patterns": ["sensors-*"]}
    assert normalise(file) == normalise(cluster)
    assert diff("index", "sensors", cluster, file) == ""
    assert normalise({**INDEX, "index_patterns": "alerts-*"}) != normalise(cluster)

"""indexer.templates: template files. Loading order, validation, composing, and comparing with the cluster's shape."""

import json
from pathlib import Path

import pytest

from indexer.documents import METADATA_FIELDS
from indexer.errors import ConfigError
from indexer.templates import (
    check_body, choose, compose, diff, flat_settings, load_templates, merge_mappings, nested_settings,
    normalise, patterns_overlap,
)

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


# ---------------------------------------------------------------- what a file is checked for before the cluster is asked


@pytest.mark.parametrize("kind, body, message", [
    ("component", {"template": {"mappings": {"properties": {"_id": {"type": "keyword"}}}}}, "field '_id' is a metadata field"),
    ("component", {"template": {"mappings": {"properties": {"_source.x": {"type": "keyword"}}}}}, "'_source.x'"),
    ("index", {"index_patterns": ["a-*"], "template": {"mappings": {"properties": {"_routing": {}}}}}, "'_routing'"),
    ("index", {"index_patterns": [], "priority": 1}, "index_patterns must be"),
    ("index", {"index_patterns": ["a-*"], "composed_of": "base"}, "composed_of must be a list"),
    ("index", {"index_patterns": ["a-*"], "priority": -1}, "priority must be a whole number"),
    ("index", {"index_patterns": ["a-*"], "priority": "high"}, "priority must be a whole number"),
    ("component", {"template": []}, "template must be an object"),
    ("component", {"template": {"settings": "one shard"}}, "template.settings must be an object"),
])
def test_a_template_the_engines_would_refuse_is_refused_by_its_file_first(tmp_path, kind, body, message):
    assert message in check_body(kind, body)
    write(tmp_path, kind, "bad", body)
    with pytest.raises(ConfigError, match=r"bad\.json: "):
        load_templates(tmp_path)


def test_metadata_names_are_refused_only_at_the_top_of_a_mapping():
    nested = {"template": {"mappings": {"properties": {"meta": {"properties": {"_id": {"type": "keyword"}}}}}}}
    assert check_body("component", nested) is None  # meta._id: tried, every engine takes it
    assert {"_id", "_source", "_index", "_routing", "_version", "_seq_no"} <= METADATA_FIELDS
    assert not {"_type", "_meta", "_all", "_primary_term"} & METADATA_FIELDS  # every engine takes these


# ---------------------------------------------------------------- compose, as the engines merge composed templates


def test_components_compose_in_order_then_the_index_template_settings_key_by_key():
    first = {"template": {"settings": {"number_of_shards": 1, "refresh_interval": "1s"}}}
    second = {"template": {"settings": {"index": {"refresh_interval": "5s"}, "index.mapping.coerce": False}}}
    index = {"index_patterns": ["a-*"], "template": {"settings": {"number_of_shards": 2}}}
    assert compose([first, second, index])["settings"] == {
        "index": {"number_of_shards": "2", "refresh_interval": "5s", "mapping": {"coerce": "false"}}}


def test_mappings_merge_property_by_property_objects_recursively_and_a_field_defined_again_replaced_whole():
    first = {"template": {"mappings": {"dynamic": "strict", "properties": {
        "code": {"type": "text", "fields": {"raw": {"type": "keyword"}}},
        "meta": {"properties": {"source": {"type": "keyword"}, "site": {"type": "keyword"}}}}}}}
    second = {"template": {"mappings": {"properties": {
        "code": {"type": "keyword"}, "meta": {"properties": {"site": {"type": "long"}}}, "n": {"type": "long"}}}}}
    assert compose([first, second])["mappings"] == {"dynamic": "strict", "properties": {
        "code": {"type": "keyword"},
        "meta": {"properties": {"source": {"type": "keyword"}, "site": {"type": "long"}}},
        "n": {"type": "long"}}}


def test_an_object_becoming_a_field_or_nested_is_replaced_and_dynamic_templates_merge_by_name():
    base = {"properties": {"o": {"properties": {"a": {"type": "long"}}}, "n": {"properties": {"a": {"type": "long"}}}},
            "dynamic_templates": [{"strings": {"match": "*"}}, {"longs": {"match": "n*"}}]}
    later = {"properties": {"o": {"type": "keyword"}, "n": {"type": "nested", "properties": {"b": {"type": "long"}}}},
             "dynamic_templates": [{"longs": {"match": "l*"}}, {"dates": {"match": "d*"}}]}
    merged = merge_mappings(base, later)
    assert merged["properties"] == {"o": {"type": "keyword"}, "n": {"type": "nested", "properties": {"b": {"type": "long"}}}}
    assert merged["dynamic_templates"] == [{"strings": {"match": "*"}}, {"longs": {"match": "l*"}}, {"dates": {"match": "d*"}}]
    assert base["properties"]["o"] == {"properties": {"a": {"type": "long"}}}  # the arguments are left alone


def test_aliases_compose_by_name():
    assert compose([{"template": {"aliases": {"a": {}, "b": {"is_hidden": True}}}},
                    {"template": {"aliases": {"b": {}}}}])["aliases"] == {"a": {}, "b": {}}


def test_settings_flatten_and_nest_back_in_the_clusters_shape():
    flat = flat_settings({"number_of_shards": 1, "index": {"analysis": {"analyzer": {"x": {"filter": ["lowercase"]}}}}})
    assert flat == {"index.number_of_shards": "1", "index.analysis.analyzer.x.filter": ["lowercase"]}
    assert nested_settings(flat) == {"index": {"number_of_shards": "1", "analysis": {"analyzer": {"x": {"filter": ["lowercase"]}}}}}


# ---------------------------------------------------------------- which index template applies, which ones clash


def test_the_highest_priority_template_whose_patterns_match_applies():
    templates = [("all", {"index_patterns": ["*"], "priority": 1}), ("s", {"index_patterns": "sensors-*", "priority": 5}),
                 ("eu", {"index_patterns": ["sensors-eu-*"], "priority": 9}), ("x", {"index_patterns": ["x-*"], "priority": 99})]
    assert choose(templates, "sensors-20260101000000")[0] == "s"
    assert choose(templates, "sensors-eu-20260101000000")[0] == "eu"
    assert choose(templates, "other")[0] == "all"
    assert choose(templates[1:], "other") is None
    assert choose([("s", {"index_patterns": ["s.*"]})], "sx1") is None  # "." is no wildcard


@pytest.mark.parametrize("a, b, overlap", [
    ("sensors-*", "sensors-eu-*", True), ("a-*", "b-*", False), ("*", "x", True), ("a*b", "*c", False),
    ("a*c", "ab*", True), ("x-1", "x-1", True), ("x-1", "x-2", False), ("*-eu", "sensors-*", True),
])
def test_two_index_patterns_overlap_when_one_name_matches_both(a, b, overlap):
    assert patterns_overlap(a, b) is overlap and patterns_overlap(b, a) is overlap

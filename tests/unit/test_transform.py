"""indexer.transform: the user's transform, imported from the job folder without leaving it on sys.path, and checked."""

import sys
import uuid

import pytest

from indexer import transform
from indexer.errors import ConfigError, IndexerError

ADD_SITE = "def add_site(docs):\n    return [{**d, 'site': 'eu'} for d in docs]\n"


@pytest.fixture
def module_name(monkeypatch):
    """A module name no other test uses; sys.path and sys.modules restored afterwards."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    name = f"transform_{uuid.uuid4().hex}"
    yield name
    sys.modules.pop(name, None)


# ---------------------------------------------------------------- load


def test_transform_is_imported_from_the_job_folder(tmp_path, module_name):
    (tmp_path / f"{module_name}.py").write_text(ADD_SITE)
    add_site = transform.load(f"{module_name}:add_site", tmp_path)
    assert add_site([{"id": 1}]) == [{"id": 1, "site": "eu"}]


def test_the_job_folder_is_searched_first_but_left_off_sys_path_afterwards(tmp_path, module_name):
    (tmp_path / f"{module_name}.py").write_text(f"import {module_name}_helper\n{ADD_SITE}")
    (tmp_path / f"{module_name}_helper.py").write_text("")
    before = list(sys.path)
    try:
        transform.load(f"{module_name}:add_site", tmp_path)  # the folder's own helper module is found too
    finally:
        sys.modules.pop(f"{module_name}_helper", None)
    assert sys.path == before


def test_a_path_the_module_adds_while_imported_is_kept(tmp_path, module_name):
    (tmp_path / f"{module_name}.py").write_text(f"import sys\nsys.path.append('/opt/vendored')\n{ADD_SITE}")
    before = list(sys.path)
    transform.load(f"{module_name}:add_site", tmp_path)
    assert sys.path == [*before, "/opt/vendored"]


@pytest.mark.parametrize("body", ["def add_site(docs):\n    return docs +\n", "raise RuntimeError('boom')\n",
                                  "import no_such_module_anywhere\n"])
def test_sys_path_is_restored_when_the_import_fails(tmp_path, module_name, body):
    (tmp_path / f"{module_name}.py").write_text(body)
    before = list(sys.path)
    with pytest.raises(ConfigError):
        transform.load(f"{module_name}:add_site", tmp_path)
    assert sys.path == before


def test_missing_transform_module_is_a_config_error(tmp_path, module_name):
    with pytest.raises(ConfigError, match=f"job.transform: cannot import module '{module_name}'"):
        transform.load(f"{module_name}:add_site", tmp_path)


def test_missing_transform_function_is_a_config_error(tmp_path, module_name):
    (tmp_path / f"{module_name}.py").write_text("def other(docs):\n    return docs\n")
    with pytest.raises(ConfigError, match="has no function 'add_site'"):
        transform.load(f"{module_name}:add_site", tmp_path)


def test_transform_module_with_a_syntax_error_is_a_config_error(tmp_path, module_name):
    (tmp_path / f"{module_name}.py").write_text("def add_site(docs):\n    return docs +\n")
    with pytest.raises(ConfigError, match="job.transform"):
        transform.load(f"{module_name}:add_site", tmp_path)


def test_a_module_failing_at_import_is_a_one_line_config_error_keeping_the_cause(tmp_path, module_name):
    (tmp_path / f"{module_name}.py").write_text("raise RuntimeError('no licence file')\n")
    with pytest.raises(ConfigError) as info:
        transform.load(f"{module_name}:add_site", tmp_path)
    assert str(info.value) == f"job.transform: importing '{module_name}' failed: RuntimeError: no licence file"
    assert isinstance(info.value.__cause__, RuntimeError)  # shown under --debug


# ---------------------------------------------------------------- apply


def test_apply_returns_the_transforms_documents_as_a_list():
    assert transform.apply(lambda docs: ({**d, "n": 1} for d in docs), [{"id": 1}]) == [{"id": 1, "n": 1}]


def test_a_transform_that_raises_fails_the_run_naming_the_error_and_keeping_the_cause():
    def broken(docs):
        raise KeyError("site")

    with pytest.raises(IndexerError) as info:
        transform.apply(broken, [{"id": 1}])
    assert str(info.value) == "job.transform raised KeyError: 'site'"
    assert isinstance(info.value.__cause__, KeyError)


@pytest.mark.parametrize("result", [None, [{"id": 1}, "not a dict"], [["id", 1]]])
def test_a_transform_must_return_a_list_of_dicts(result):
    with pytest.raises(IndexerError, match="^job.transform must return a list of dicts$"):
        transform.apply(lambda docs: result, [{"id": 1}])

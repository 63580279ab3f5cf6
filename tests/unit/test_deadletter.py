"""indexer.deadletter: the dead-letter file is checked before a row is read (one line when it cannot be
written), without leaving a file or a folder behind. Real files in tmp_path."""

import pytest

from indexer.deadletter import DeadLetters
from indexer.errors import ConfigError


def _dead(path) -> DeadLetters:
    return DeadLetters(path, "job", "sensors", ["code"], "2025-01-01T00:00:00")


def test_a_dead_letter_file_that_cannot_be_written_is_one_config_error_before_the_run(tmp_path):
    with pytest.raises(ConfigError, match=r"dead-letter file /proc/x cannot be written: ") as caught:
        _dead(tmp_path.__class__("/proc/x")).check()
    assert caught.value.exit_code == 2 and "\n" not in str(caught.value)
    with pytest.raises(ConfigError, match=r"its folder .*missing does not exist"):
        _dead(tmp_path / "missing" / "dead.ndjson").check()
    assert not (tmp_path / "missing").exists()  # never created behind the user's back
    (tmp_path / "a-folder.ndjson").mkdir()
    with pytest.raises(ConfigError, match="cannot be written: Is a directory"):
        _dead(tmp_path / "a-folder.ndjson").check()


def test_a_writable_dead_letter_file_is_checked_without_leaving_a_file_behind(tmp_path):
    _dead(tmp_path / "dead.ndjson").check()
    assert not (tmp_path / "dead.ndjson").exists()
    (tmp_path / "kept.ndjson").write_text('{"earlier": 1}\n')
    _dead(tmp_path / "kept.ndjson").check()
    assert (tmp_path / "kept.ndjson").read_text() == '{"earlier": 1}\n'

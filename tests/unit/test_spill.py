"""indexer.spill: sets of ids larger than memory. Sorted runs on disk, merged back in order, and the
temporary folders: removed at the end, also on failure, and after a killed run by the next one."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest

from indexer.errors import ConfigError
from indexer.spill import PREFIX, SortedIds, SortedPairs, in_slices, read_run, remove_leftovers, workspace


def test_ids_come_back_sorted_and_distinct_whatever_order_they_were_added_in(tmp_path):
    ids = [f"SEN{n:07d}" for n in range(10_000)]
    shuffled = ids + ids[:500]  # repeats come back once
    random.Random(7).shuffle(shuffled)
    spilled = SortedIds(tmp_path, "source", run_size=1000)
    spilled.add(shuffled)
    assert spilled.added == 10_500
    assert list(spilled.sorted()) == ids


def test_memory_is_bounded_by_the_run_size_every_full_run_goes_to_disk(tmp_path):
    spilled = SortedIds(tmp_path, "index", run_size=100)
    for n in range(1050):
        spilled.append(str(n))
        assert len(spilled.buffer) < 100  # never more than one run's worth held
    assert len(spilled.runs) == 10 and len(spilled.buffer) == 50
    assert list(spilled.sorted()) == sorted(str(n) for n in range(1050))
    assert len(spilled.runs) == 11 and spilled.buffer == []
    assert all(list(read_run(run)) == sorted(read_run(run)) for run in spilled.runs)  # each run sorted on disk


def test_any_text_is_one_id_newlines_backslashes_and_non_ascii_included(tmp_path):
    odd = ["a\nb", "a\\nb", "a\\", "\\", "x\r\ny", "é|ü", "", "#" + "f" * 64, "a\\\nb"]
    spilled = SortedIds(tmp_path, "odd", run_size=2)
    spilled.add(odd)
    assert list(spilled.sorted()) == sorted(set(odd))


def test_the_files_hold_ids_only(tmp_path):
    spilled = SortedIds(tmp_path, "source", run_size=2)
    spilled.add(["b", "a", "c"])
    list(spilled.sorted())
    assert sorted(p.read_text() for p in tmp_path.iterdir()) == ["a\nb\n", "c\n"]


def test_pairs_come_back_sorted_by_id_then_digest_and_distinct(tmp_path):
    pairs = [(f"SEN{n:05d}", f"{n % 7:032x}") for n in range(3000)]
    shuffled = pairs + pairs[:100] + [("SEN00001", "")]   # a repeat comes back once; a second digest stays
    random.Random(5).shuffle(shuffled)
    spilled = SortedPairs(tmp_path, "source", run_size=250)
    spilled.add(shuffled)
    assert spilled.added == 3101 and len(spilled.runs) == 12 and len(spilled.buffer) < 250
    assert list(spilled.sorted()) == sorted({*pairs, ("SEN00001", "")})


def test_a_pairs_id_may_hold_tabs_newlines_and_backslashes_and_its_digest_may_be_empty(tmp_path):
    odd = ["a\tb", "a\t", "\t", "a\\tb", "a\nb\t", "x\r\ny", "", "é|ü", "a\\", "\\"]
    pairs = [(id_, digest) for id_ in odd for digest in ("", "0123456789abcdef0123456789abcdef")]
    spilled = SortedPairs(tmp_path, "odd", run_size=3)
    spilled.add(reversed(pairs))
    assert list(spilled.sorted()) == sorted(pairs)
    lines = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert lines.count(b"\n") == len(pairs)             # one line a pair: newlines in ids escaped


def test_an_empty_set_reads_back_empty(tmp_path):
    assert list(SortedIds(tmp_path, "none").sorted()) == []


def test_slices_cut_a_stream_into_bounded_lists():
    assert list(in_slices(iter("abcdefg"), 3)) == [["a", "b", "c"], ["d", "e", "f"], ["g"]]
    assert list(in_slices([], 3)) == []


def test_the_workspace_is_removed_at_the_end_and_on_failure(tmp_path):
    with workspace("sensors", tmp_path) as folder:
        assert folder.parent == tmp_path and folder.name.startswith(f"{PREFIX}sensors-{os.getpid()}-")
        (folder / "run-0.ids").write_text("a\n")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError):
        with workspace("sensors", tmp_path) as folder:
            (folder / "run-0.ids").write_text("a\n")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def _dead_pid() -> int:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(child.stdout)


def test_a_killed_runs_folder_is_removed_by_the_next_run_and_nothing_else(tmp_path):
    dead = _dead_pid()
    killed = tmp_path / f"{PREFIX}sensors-{dead}-abc123"
    live = tmp_path / f"{PREFIX}sensors-{os.getpid()}-def456"          # a run still going (this process)
    other_alias = tmp_path / f"{PREFIX}sensors-eu-{dead}-ghi789"      # another alias's: not ours to judge
    unrelated = tmp_path / f"sensors-{dead}-abc"
    for folder in (killed, live, other_alias, unrelated):
        folder.mkdir()
        (folder / "run-0.ids").write_text("a\n")
    with workspace("sensors", tmp_path):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other_alias.name, unrelated.name])
    assert remove_leftovers(tmp_path, "sensors-eu") == [other_alias]


def test_a_temp_dir_that_cannot_be_used_is_one_config_error(tmp_path):
    with pytest.raises(ConfigError, match="--temp-dir .*missing: cannot create a folder there"):
        with workspace("sensors", tmp_path / "missing"):
            pass

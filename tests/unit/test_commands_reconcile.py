"""indexer.commands.reconcile without a cluster: the summary a reconcile reports, as JSON (``as_dict``) and
as the lines the terminal prints after its summary line. The command against the real node:
tests/integration/test_reconcile.py and test_reconcile_cli.py."""

from __future__ import annotations

from indexer.commands.reconcile import ReconcileSummary
from indexer.terminal import _reconciled


def test_the_cli_lines_name_the_counts_and_the_samples():
    s = ReconcileSummary(command="reconcile", started="t", job="job", alias="sensors", index="sensors-1",
                         in_source=4, in_index=5, compared=6, unchanged=3, to_delete=2, to_index=1,
                         sample_to_delete=["x", "y"], sample_to_index=["a"], dry_run=True, ids_per_second=12.0)
    assert _reconciled(s) == [
        "compared 6 ids = 3 unchanged + 2 to delete + 1 to index (4 in the source, 5 in sensors-1; "
        "0 source rows without an id); 12 ids/s; dry run: nothing written",
        "to delete, e.g.: 'x', 'y'",
        "to index, e.g.: 'a'",
    ]
    assert s.as_dict()["compared"] == 6 and s.as_dict()["sample_to_delete"] == ["x", "y"]


def test_with_digest_the_lines_name_the_changed_documents_and_the_json_holds_them():
    s = ReconcileSummary(command="reconcile", started="t", job="job", alias="sensors", index="sensors-1",
                         in_source=5, in_index=5, compared=5, unchanged=3, changed=2, digest=True,
                         sample_changed=["b", "c"], ids_per_second=5.0)
    assert _reconciled(s) == [
        "compared 5 ids = 3 unchanged + 2 changed + 0 to delete + 0 to index (5 in the source, 5 in sensors-1; "
        "0 source rows without an id); 5 ids/s",
        "changed, e.g.: 'b', 'c'",
    ]
    assert (s.as_dict()["changed"], s.as_dict()["sample_changed"], s.as_dict()["digest"]) == (2, ["b", "c"], True)

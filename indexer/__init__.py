"""indexer: copy rows from a relational database into Elasticsearch or OpenSearch.

Data flows one way, config -> source -> transform -> sink -> state::

    config -> extract (sources, documents, watermark) -> bridge -> sink (engine) -> state
    (job)     (rows -> chunks of NDJSON actions)        (thread    (bulk)
                                                         -> async)

``indexer.commands`` composes the stages into the commands, one module each; ``cli`` is a thin
typer layer on top and ``terminal`` prints. ARCHITECTURE.md names every module and what it owns.
"""

import gc

__version__ = "0.1.0"

# The cyclic garbage collector's thresholds for a command's process (Python's are 700, 10, 10).
# A run allocates a dict and an action per row, nearly all freed by reference counting, and at
# the default the collector walks them every 700 allocations: 3 of every 10 CPU seconds of a reindex
# (BENCHMARKS.md, "Before and after the restructuring", last line). mypy tunes its collector the same
# way for the same reason.
GC_THRESHOLDS = (100_000, 20, 20)


def tune_gc() -> None:
    """Collect cyclic garbage less often (see GC_THRESHOLDS): the command line's process setting,
    also used by the benchmark's extraction-only reader. Library callers keep their own."""
    gc.set_threshold(*GC_THRESHOLDS)

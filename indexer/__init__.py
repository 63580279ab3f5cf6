"""indexer: copy rows from a relational database into Elasticsearch or OpenSearch.

Data flows one way::

    config -> source -> documents -> bridge -> engine -> state
    (job)     (rows)    (NDJSON)     (thread    (bulk)
                                      -> async)

``pipeline`` composes the stages into ``bootstrap`` and ``reindex``; ``cli`` is
a thin typer layer on top of ``pipeline``.
"""

__version__ = "0.1.0"

"""Every failure indexer reports, under one base class.

::

    IndexerError                  exit 1: the run failed
    ├── ConfigError               exit 2: job file, mappings, options or environment
    ├── SourceError               the database: connect, query, driver
    ├── EngineError               the cluster rejected a request or is unreachable
    ├── VerificationError         a reindex check failed (counts, duplicate keys); alias untouched
    ├── RefusedError              refused to do what looked unsafe (swap guard, reconcile's guards,
    │   └── LockedError (lease)   the lock held by another run): outcome "refused", nothing written
    └── RowError                  one row cannot become a document (counted per row)

The CLI maps these to exit codes in exactly one place (``cli._run``). Messages
never contain secrets; they name columns, fields, indices and counts, and row
data only as document ids where the user needs them to act (duplicate keys, the
first refused document).
"""


class IndexerError(Exception):
    exit_code = 1


class ConfigError(IndexerError):
    exit_code = 2


class SourceError(IndexerError):
    pass


class EngineError(IndexerError):
    pass


class VerificationError(IndexerError):
    pass


class RefusedError(IndexerError):
    """The run refused to go on because going on looked unsafe; its outcome is ``refused``, not ``failed``."""


class RowError(IndexerError):
    """A row that cannot become a document; the message names the reason, never the values."""

"""The commands, one module each, every one a short composition of the stages (``cli`` only declares options).

::

    bootstrap  template files -> validated on the engine -> installed       (commands.bootstrap)
    reindex    run frame -> fresh index -> read, send, verify -> one swap    (commands.reindex)
    sync       run frame -> since the watermark -> read, send -> state       (commands.sync)
    watch      sync --every: passes until a signal, reconcile when due       (commands.watch)
    reconcile  run frame -> both sides' ids compared (drift) -> the repair   (commands.reconcile)
    status     state + alias count + source count                           (commands.status)
    init       a table's catalogue -> a job file and its templates          (commands.init)
    preview    the first rows -> the next index -> the problems found        (commands.preview)

A command returns what it did (a summary, a report, a list of changes); ``terminal`` prints it.
"""

"""The web dashboard (``streamrec dashboard``): a separate process that reads every worker.

Owns the pages and their JSON (``app.py``), the workers' HTTP answers (``workers.py``), the
figures computed from their ``/metrics`` text (``figures.py``: pure), and what it reads from
the topics itself (``topics.py``: recommendations, events, dead letters, model updates).
A process of its own so it sums every worker, outlives a worker's restart and keeps work off
the workers' event loops. May import ``stream.core``, ``stream.kafka``, ``stream.settings``,
``stream.errors``, ``stream.exposition``; never ``stream.runtime``, ``stream.serving``, Faust or
aiokafka internals.
"""

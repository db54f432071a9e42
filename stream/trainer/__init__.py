"""The periodic trainer: snapshot the topics, train, gate on held-out quality, publish a version.

Owns one trainer run and the trainer's metrics endpoint. May import
``stream.core``, ``stream.kafka``, ``models`` and ``index``; never
``stream.runtime`` (the worker learns of a version only from ``model-updates``),
Faust or mode.
"""

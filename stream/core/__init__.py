"""Core: what flows on the topics and the rules that update a user, pure: no Kafka, no files.

Owns the record schemas of every topic (events, items, recommendations, dead
letters, model announcements) with their validation and encoding, the per-user
state and the rule that applies an event to it, the topic names, and the
trending counter (``python -m stream.core.schemas`` writes the schemas to
``docs/schemas``; importing it writes nothing). May import ``stream.settings``,
``stream.errors``, ``models`` (feedback rules) and third-party pure libraries;
never ``stream.serving``, ``stream.kafka``, ``stream.runtime``, ``stream.trainer``
or ``stream.demo``.
"""

"""Kafka clients: connection options, topic admin, range reader, whole-topic feeds, producers.

Everything here uses the public API of aiokafka and kafka-python only, so a
patch release of either cannot break it silently. May import ``stream.core``;
never ``stream.serving``, ``stream.runtime``, ``stream.trainer``, ``stream.demo``,
Faust or mode.
"""

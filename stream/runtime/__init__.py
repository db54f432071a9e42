"""Runtime: the Faust app and worker, and the glue that lives inside Faust's and aiokafka's internals.

Owns the app factory, the worker (agent, table, feeds, timers), the batch feed,
the outbox, the partitioned state store, local-state checks, the commit fixes,
the HTTP views and the CLI commands registered on Faust's CLI. The only room
that imports ``faust``, ``mode`` or private names of aiokafka; every private
name it touches is listed in :mod:`stream.runtime.private` and checked against
the pinned releases by a test. May import every other room (``stream.demo`` only from the
``demo`` command, which runs the main job).
"""

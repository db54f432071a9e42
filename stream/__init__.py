"""The streaming side of streamrec, in rooms by role (see the README's architecture section).

``core`` (schemas, user state, feedback rules: pure), ``serving`` (batch logic and
the served model: pure over NumPy/PyTorch/``index``), ``kafka`` (clients over
public aiokafka and kafka-python API), ``runtime`` (the Faust app and worker: the
only room that imports Faust, mode or aiokafka internals), ``trainer`` (the
periodic trainer), ``demo`` (the demo and the local worker harness) and ``dashboard``
(the web dashboard, a process of its own over the workers' HTTP API and the topics). The
shared foundation sits here: ``settings`` (the one typed settings object),
``errors`` (the exception root) and ``cli`` (the ``streamrec`` entry point).
"""

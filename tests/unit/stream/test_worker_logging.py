import asyncio
import logging

from stream.runtime.worker import Worker


class SpinnerHandler(logging.Handler):  # named like faust.utils.terminal's
    def emit(self, record):
        pass


def test_faust_spinner_no_longer_holds_the_root_logger_at_debug():
    root = logging.getLogger()
    saved = root.level, list(root.handlers)
    try:
        console = logging.StreamHandler()
        console.setLevel(logging.WARNING)
        root.handlers = [console, SpinnerHandler(level=logging.DEBUG)]
        root.setLevel(logging.DEBUG)  # what faust's worker does at --loglevel warn
        asyncio.run(Worker._undo_spinner_logging(None))
        assert root.handlers == [console]
        assert root.level == logging.WARNING and not logging.getLogger("aiokafka").isEnabledFor(logging.DEBUG)
    finally:
        root.setLevel(saved[0])
        root.handlers = saved[1]

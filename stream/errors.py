"""The exception root of the ``stream`` package."""


class StreamError(Exception):
    """Base class of every error raised by ``stream``."""


class ConfigError(StreamError):
    """Settings are missing or inconsistent."""


class InvalidRecord(StreamError):
    """A record of one of the project's topics could not be decoded or validated.

    ``reason`` is a short machine-readable code (``bad_json``, ``missing_field``,
    ...) used as the dead-letter reason and as a metric label; ``detail`` says
    what was wrong in words.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class InvalidEvent(InvalidRecord):
    """A record could not be decoded or validated as an event."""


class TopicError(StreamError):
    """A topic is missing or exists with settings the project cannot work with."""

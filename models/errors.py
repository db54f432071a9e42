"""The exception root of the ``models`` package."""


class ModelsError(Exception):
    """Base class of every error raised by ``models``."""


class DataError(ModelsError):
    """Input data is missing, malformed or inconsistent."""

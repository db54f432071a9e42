"""How many records a worker processes before it lets its event loop run again.

A fetched batch is processed on the event loop that also answers HTTP requests
and takes the consumer's fetches, so one large batch would hold them all for
its whole length (hundreds of ms with a trained tower). The worker processes it
in slices instead, each sized from the measured cost per record to take about
``target_s``, and yields between slices.
"""

from __future__ import annotations


class SlicePacer:
    """Slice sizes from an exponentially weighted mean of the seconds per record."""

    def __init__(self, target_s: float, minimum: int = 16, maximum: int = 100_000, smoothing: float = 0.3) -> None:
        if target_s <= 0:
            raise ValueError(f"target_s must be positive, got {target_s}")
        if not 1 <= minimum <= maximum:
            raise ValueError(f"need 1 <= minimum <= maximum, got {minimum}, {maximum}")
        if not 0 < smoothing <= 1:
            raise ValueError(f"smoothing must be in (0, 1], got {smoothing}")
        self.target_s = target_s
        self.minimum, self.maximum = minimum, maximum
        self._smoothing = smoothing
        self._per_record: float | None = None  # unknown until the first slice is measured

    @property
    def seconds_per_record(self) -> float | None:
        return self._per_record

    def size(self) -> int:
        """Records in the next slice: the target over the cost per record, within the bounds
        (the minimum until a slice was measured)."""
        if not self._per_record:
            return self.minimum
        return max(self.minimum, min(self.maximum, int(self.target_s / self._per_record)))

    def observe(self, records: int, seconds: float) -> None:
        """Record that ``records`` took ``seconds``."""
        if records <= 0 or seconds < 0:
            return
        cost = seconds / records
        if self._per_record is None:
            self._per_record = cost
        else:
            self._per_record += self._smoothing * (cost - self._per_record)

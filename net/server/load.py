"""How loaded a cloud process is: the factor by which its requests now take longer than unloaded.

Each finished request compares its compute time with the fastest seen for the same model and
cut (the unloaded time); a moving average of those ratios is the load. It decays toward 1 while
no request finishes, so an edge that moved its work home sees the cloud free up again on its
next probe. Every reply carries it; the edge scales its predicted cloud latencies by it. It is
a figure of this process only, sent with every reply: nothing an edge needs lives on a server.
"""
from __future__ import annotations

import threading
import time

EWMA_WEIGHT = 0.3   # weight of the newest request's ratio
HALF_LIFE_S = 2.0   # an idle cloud's load halves its distance to 1 every this many seconds


class LoadMeter:
    def __init__(self) -> None:
        self._unloaded_ms: dict[tuple, float] = {}
        self._ratio = 1.0
        self._updated = time.monotonic()
        self._lock = threading.Lock()

    def _decayed(self, now: float) -> float:
        return 1.0 + (self._ratio - 1.0) * 0.5 ** ((now - self._updated) / HALF_LIFE_S)

    def record(self, key: tuple, compute_ms: float) -> None:
        with self._lock:
            now = time.monotonic()
            unloaded = min(self._unloaded_ms.get(key, compute_ms), compute_ms)
            self._unloaded_ms[key] = unloaded
            ratio = compute_ms / unloaded if unloaded > 0 else 1.0
            self._ratio = (1 - EWMA_WEIGHT) * self._decayed(now) + EWMA_WEIGHT * ratio
            self._updated = now

    def factor(self) -> float:
        with self._lock:
            return max(1.0, self._decayed(time.monotonic()))

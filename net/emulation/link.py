"""Link emulation for experiments on one machine: the paper's network presets and a pacer that
shapes the edge's uplink in the sender, so measured transfer times match the network being studied.
Pass `pacer=None` to send_frame for an unshaped (real) link.
"""
from __future__ import annotations

import math
import socket
import threading
import time

# Uplink bandwidths in Mbit/s (10^6 bit/s) measured in Kang et al., "Neurosurgeon", ASPLOS 2017.
# The only place these numbers live in the code.
NETWORK_PRESETS_MBPS = {"3g": 1.1, "lte": 5.85, "wifi": 18.88}


def parse_bandwidth(text: str) -> float:
    """Bandwidth in Mbit/s from a preset name (case-insensitive) or a positive number of Mbit/s."""
    key = str(text).strip().lower()
    if key in NETWORK_PRESETS_MBPS:
        return NETWORK_PRESETS_MBPS[key]
    try:
        mbps = float(key)
    except ValueError:
        mbps = math.nan
    if not (math.isfinite(mbps) and mbps > 0):
        presets = ", ".join(f"{name} ({rate} Mbit/s)" for name, rate in NETWORK_PRESETS_MBPS.items())
        raise ValueError(f"bandwidth must be a preset ({presets}) or a positive number of Mbit/s, got {text!r}")
    return mbps


class LinkPacer:
    """Shapes sends to `rate_mbps` Mbit/s, like a link that serialises bytes at that rate.

    Data goes out in chunks of `burst_bytes`; each chunk occupies the emulated link for
    chunk / rate seconds after the link is free, and is handed to the socket when that time has
    passed, i.e. when its last byte would have crossed the link. So N bytes take at least
    N / rate, from an idle link as from a busy one: pacing can only slow a transfer, and no idle
    credit lets a burst through early (the paper's measured rates are sustained rates). One lock
    guards the link's schedule, not the I/O: threads that share a pacer (the bandwidth probe and
    the tensors) share one uplink, which carries one `send` at a time, whole (a caller sending a
    frame in pieces holds `exclusive()` around them, as CloudClient does: a FIFO queue of
    frames). `rate_mbps` may be changed at run time (bandwidth-trace replay); the new rate
    applies from the next chunk.
    """

    def __init__(self, rate_mbps: float, burst_bytes: int = 16 * 1024):
        if burst_bytes < 1:
            raise ValueError(f"burst_bytes must be >= 1, got {burst_bytes}")
        self.burst_bytes = int(burst_bytes)
        self._lock = threading.Lock()
        # Held for a whole frame, so frames from two threads never interleave chunk by chunk: a
        # bandwidth probe interleaved with a tensor upload timed half the link (see exclusive()).
        self._frame_lock = threading.RLock()
        self._busy_until = time.monotonic()  # when the emulated link has carried all it was given
        self._bytes_per_s = self._check_rate(rate_mbps) * 1e6 / 8

    @staticmethod
    def _check_rate(rate_mbps: float) -> float:
        if not (isinstance(rate_mbps, (int, float)) and math.isfinite(rate_mbps) and rate_mbps > 0):
            raise ValueError(f"rate_mbps must be a positive finite number of Mbit/s, got {rate_mbps!r} "
                             "(use pacer=None for an unshaped link)")
        return float(rate_mbps)

    @property
    def rate_mbps(self) -> float:
        with self._lock:
            return self._bytes_per_s * 8 / 1e6

    @rate_mbps.setter
    def rate_mbps(self, rate_mbps: float) -> None:
        rate = self._check_rate(rate_mbps)
        with self._lock:
            self._bytes_per_s = rate * 1e6 / 8

    def _reserve(self, nbytes: int) -> float:
        """Book `nbytes` on the link; return how long to wait until they have crossed it.

        A sleep wakes late by tens of microseconds; restarting the schedule from each late wake-up
        added those up (at 1000 Mbit/s the link behaved like ~600). So a transfer keeps its ideal
        timeline while it is less than one chunk behind it; every chunk still leaves no earlier
        than its bytes could have crossed the link, and an idle link starts from now."""
        with self._lock:
            now = time.monotonic()
            chunk_s = nbytes / self._bytes_per_s
            start = self._busy_until if self._busy_until > now - chunk_s else now
            self._busy_until = start + chunk_s
            return max(0.0, self._busy_until - now)

    def exclusive(self) -> threading.RLock:
        """`with pacer.exclusive():` keeps the link to this thread's frames, e.g. for a timed probe
        and its reply: another thread's frame waits until the block ends instead of sharing the
        link with the probe (which then timed the two frames, not the link)."""
        return self._frame_lock

    def send(self, sock: socket.socket, data: memoryview) -> None:
        """sock.sendall(data), in chunks of at most burst_bytes, each when the link has carried it."""
        data = memoryview(data).cast("B")
        with self._frame_lock:
            for start in range(0, data.nbytes, self.burst_bytes):
                chunk = data[start:start + self.burst_bytes]
                time.sleep(self._reserve(chunk.nbytes))
                sock.sendall(chunk)

"""Link emulation for experiments on one machine: the paper's network presets and a token-bucket
pacer that shapes the edge's uplink in the sender, so measured transfer times match the network
being studied. Pass `pacer=None` to send_frame for an unshaped (real) link.
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


class TokenBucketPacer:
    """Shapes sends to at most `rate_mbps` Mbit/s over the long run, with bursts of `burst_bytes`.

    The bucket holds up to `burst_bytes` tokens (1 token = 1 byte) and refills at the rate. A
    chunk takes its tokens up front and may drive the bucket into debt; the sender then sleeps
    until the debt is repaid, so the long-run rate never exceeds the target, and pacing can only
    slow a transfer. One lock guards the bucket, not the I/O: threads that share a pacer (the
    bandwidth probe and the tensors) share one uplink. `rate_mbps` may be changed at run time
    (bandwidth-trace replay); the new rate applies from the next chunk.
    """

    def __init__(self, rate_mbps: float, burst_bytes: int = 16 * 1024):
        if burst_bytes < 1:
            raise ValueError(f"burst_bytes must be >= 1, got {burst_bytes}")
        self.burst_bytes = int(burst_bytes)
        self._lock = threading.Lock()
        self._tokens = float(self.burst_bytes)  # start full: the first burst goes out at once
        self._refilled_at = time.monotonic()
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
            self._refill()  # tokens earned so far are earned at the old rate
            self._bytes_per_s = rate * 1e6 / 8

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self.burst_bytes, self._tokens + (now - self._refilled_at) * self._bytes_per_s)
        self._refilled_at = now

    def _take(self, nbytes: int) -> float:
        """Take `nbytes` tokens; return how long to sleep before sending them."""
        with self._lock:
            self._refill()
            self._tokens -= nbytes
            return max(0.0, -self._tokens / self._bytes_per_s)

    def seconds_until_full(self) -> float:
        """How long until the bucket holds a whole burst again (a probe waits for it, so that
        every probe starts with the same credit and their times differ only by their sizes)."""
        with self._lock:
            self._refill()
            return max(0.0, (self.burst_bytes - self._tokens) / self._bytes_per_s)

    def send(self, sock: socket.socket, data: memoryview) -> None:
        """sock.sendall(data), in chunks of at most burst_bytes, each sent when the bucket allows."""
        data = memoryview(data).cast("B")
        for start in range(0, data.nbytes, self.burst_bytes):
            chunk = data[start:start + self.burst_bytes]
            wait_s = self._take(chunk.nbytes)
            if wait_s > 0:
                time.sleep(wait_s)
            sock.sendall(chunk)

"""Measure the uplink to a cloud (or monitor server) with timed probes, in Mbit/s.

Probes of two sizes: their times share the RTT and the per-request overhead, so the rate is the
size difference over the time difference (the small probe is sent twice; the faster counts). The larger
probe is sized from the small one to take about `target_s`, so a measurement stays bounded in
time on slow links (about half a second at 3G) while a fast link gets a probe large enough to
time.
"""
from __future__ import annotations

import statistics

from net.edge.client import CloudClient

SMALL_PROBE_BYTES = 8 * 1024
MAX_PROBE_BYTES = 8 * 2**20
TARGET_PROBE_S = 0.25


def measure_bandwidth_mbps(client: CloudClient, target_s: float = TARGET_PROBE_S, rounds: int = 1) -> float:
    """Uplink rate in Mbit/s (10^6 bit/s) measured over `client`'s connection."""
    estimates = []
    for _ in range(rounds):
        small_ms = client.probe(SMALL_PROBE_BYTES)
        # A lower bound of the rate (the small probe's time includes RTT and overheads) sizes the
        # large probe; it then takes at most about target_s.
        floor_bytes_per_ms = SMALL_PROBE_BYTES / max(small_ms, 1e-3)
        large = int(min(MAX_PROBE_BYTES, max(4 * SMALL_PROBE_BYTES, floor_bytes_per_ms * target_s * 1e3)))
        large_ms = client.probe(large)
        small_ms = min(small_ms, client.probe(SMALL_PROBE_BYTES))
        if large_ms > small_ms:
            estimates.append((large - SMALL_PROBE_BYTES) * 8 / ((large_ms - small_ms) * 1e3))  # bits/us = Mbit/s
        else:  # the small probe took as long as the large (cross traffic on a real link, a rate step):
            # the difference says nothing, so take the large probe's bytes over its whole time, a lower bound
            estimates.append(large * 8 / (large_ms * 1e3))
    return statistics.median(estimates)


def measure(host: str, port: int, pacer=None, rtt_ms: float = 0.0, rounds: int = 1) -> float:
    """Open a connection to a monitor or cloud server at host:port and measure the uplink."""
    with CloudClient(host, port, pacer=pacer, rtt_ms=rtt_ms) as client:
        return measure_bandwidth_mbps(client, rounds=rounds)


class SpeedtestUnavailable(RuntimeError):
    pass


def speedtest_uplink_mbps(timeout_s: float = 10.0) -> float:
    """Uplink to the nearest speedtest.net server, with speedtest-cli (needs internet access).

    This measures the machine's internet uplink, not the path to the cloud: use it when the
    cloud is far away on the internet and its port cannot answer probes.
    """
    import speedtest  # imported here: only this option needs it

    try:
        tester = speedtest.Speedtest(timeout=timeout_s, secure=True)
        tester.get_best_server()
        return tester.upload(pre_allocate=False) / 1e6  # bit/s -> Mbit/s
    except (speedtest.SpeedtestException, OSError) as e:
        raise SpeedtestUnavailable(
            f"--bandwidth speedtest needs internet access to speedtest.net, which failed here "
            f"({type(e).__name__}); give --bandwidth MBPS|3g|lte|wifi or let the edge measure "
            "the cloud") from None

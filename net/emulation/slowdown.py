"""An edge device F times slower than this machine, emulated: after the edge's part, wait as
that device would still be computing."""
from __future__ import annotations

import time

import torch


def slowdown_clock() -> tuple[float, float]:
    """(wall, CPU time of this thread) now: where an emulated edge part starts."""
    return time.perf_counter(), time.thread_time()


def emulate_slowdown(started: tuple[float, float], slowdown: float) -> None:
    """Wait until F x the CPU time this thread used since `started` has passed since then: the
    work took F times as long on the emulated edge. The runner waits after the whole edge part,
    not after each unit: waiting between units left the core cold and made the next units run up
    to 35% slower here, which would have emulated a slower device than asked for. CPU time, not
    wall time, so that time spent waiting for a core (other edges or processes on this machine)
    is not stretched F times: 16 emulated edges sharing a core were measured ~17x slower than
    asked under the wall-time rule.
    The edge runs torch at 1 thread, in this thread; with more threads their CPU time is not
    this thread's, and the wall time is used."""
    if slowdown <= 1.0:
        return
    wall0, cpu0 = started
    spent = time.perf_counter() - wall0 if torch.get_num_threads() > 1 else time.thread_time() - cpu0
    time.sleep(max(0.0, wall0 + slowdown * spent - time.perf_counter()))

"""An edge device F times slower than this machine, emulated: after the edge's part, wait as
that device would still be computing (emulate_slowdown), or do the part F times (run_slowed with
by_repeating), which keeps the core and the memory as busy as the slower device's."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import torch

T = TypeVar("T")


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


def run_slowed(work: Callable[[], T], slowdown: float, by_repeating: bool = False) -> T:
    """`work()` as an edge `slowdown` times slower would take: by waiting afterwards
    (emulate_slowdown), or `by_repeating` it, F runs in all (a fraction of a run as a wait of that
    share of the last run's time), so the device is busy all along as a real slower one is.
    Why repeat: on the VMs this project is measured on, a core that waits computes the next work
    1.7-7.7x slower (EfficientNet-Lite0 at 1 thread: 36.6 ms warm, 59-73 ms after 0.3 s idle,
    147-177 ms after 3 s; benchmarks/results/idle_penalty.csv), and the wait rule multiplies that
    cold time F times.
    Repeating pays it once. It costs F x the CPU, so it is for one emulated edge per core (the
    decision-quality benchmarks), not for many edges sharing one."""
    started = slowdown_clock()
    result = work()
    if not by_repeating or slowdown <= 1.0:
        emulate_slowdown(started, slowdown)
        return result
    last_s = time.perf_counter() - started[0]
    for _ in range(int(slowdown) - 1):
        t0 = time.perf_counter()
        work()
        last_s = time.perf_counter() - t0
    time.sleep((slowdown - int(slowdown)) * last_s)
    return result

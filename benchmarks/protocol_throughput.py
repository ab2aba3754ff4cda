"""Tensor transfer throughput of our frames against a raw-socket baseline of the same bytes.

  python -m benchmarks.protocol_throughput [--sizes 10KB 100KB 1MB 10MB 100MB] [--repeats N] [--runs R] [--thp]

One TCP connection over loopback (127.0.0.1): this process sends, a second process receives
(as edge and cloud are separate processes; in one process the two sides would also contend for
the GIL). Each transfer moves one float32 tensor of SIZE bytes (10^3 / 10^6 multiples, SIZE/4
elements) and is timed from the sender's first byte to a 1-byte acknowledgement the receiver
sends once it holds every byte (the ack's loopback round trip is in every method alike).
Methods, in the same run, interleaved (frames, raw, torch, frames, ...), median of --repeats:

  frames   send_frame -> recv_frame: prefix + JSON header + tensor bytes, received into the
           connection's ReceiveBuffer, reused frame after frame (what the cloud does)
  raw      sendall of the tensor's bytes -> recv_into one preallocated bytearray (the floor)
  torch    sendall of the tensor's bytes -> recv_into a new torch.empty per transfer: what a
           receiver that allocates per message pays (page faults on fresh memory)

Every received tensor is compared with the one sent, outside the timed window (`errors`).
MB/s counts the tensor's bytes only (10^6 B/s); a frame also carries ~70 bytes of prefix and
header. --runs R repeats the whole measurement R times (a new receiving process each time): loopback
on a shared VM swings by tens of percent from run to run, more than within one. The CSV then
holds, per size, the median over the runs of each run's figures, with the least and greatest
ratio beside the median (`*_min`, `*_max`), and NAME_runs.csv every run's own rows. --thp starts
the receiver with THP_MEM_ALLOC_ENABLE=1 (PyTorch then backs allocations
of 2 MiB and more with transparent huge pages: far fewer page faults on a fresh buffer).
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import socket
import statistics
import time
from pathlib import Path

import torch

from benchmarks import RESULTS_DIR  # fresh results: runs/benchmarks/ (benchmarks/__init__.py)
from net.wire.protocol import DEFAULT_MAX_FRAME_BYTES, ReceiveBuffer, recv_frame, send_frame
from utils.provenance import provenance, write_csv_with_provenance

DEFAULT_SIZES = ["10KB", "100KB", "1MB", "10MB", "100MB"]
METHODS = ("frames", "raw", "torch")
HOST = "127.0.0.1"
SEED = 0
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9}


def parse_size(text: str) -> int:
    """'10KB' -> 10_000 bytes (10^3 multiples); a multiple of 4 (whole float32 elements)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]?B?)\s*", text.upper())
    if not match:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected e.g. 10KB, 1MB, 4096")
    nbytes = int(float(match.group(1)) * _UNITS[match.group(2)])
    if nbytes <= 0 or nbytes % 4:
        raise argparse.ArgumentTypeError(f"size {text!r} = {nbytes} bytes: must be a positive multiple of 4")
    return nbytes


def size_label(nbytes: int) -> str:
    for unit in ("GB", "MB", "KB"):
        if nbytes >= _UNITS[unit] and nbytes % _UNITS[unit] == 0:
            return f"{nbytes // _UNITS[unit]} {unit}"
    return f"{nbytes} B"


def _recv_raw_into(sock: socket.socket, view: memoryview) -> None:
    got = 0
    while got < view.nbytes:
        n = sock.recv_into(view[got:])
        if n == 0:
            raise ConnectionError("sender closed mid-transfer")
        got += n


def _payloads(sizes: list[int]) -> dict[int, torch.Tensor]:
    """The tensors sent, one per size; both processes build the same ones from the seed."""
    g = torch.Generator().manual_seed(SEED)
    return {n: torch.randn(n // 4, generator=g) for n in sizes}


def _schedule(sizes: list[int], rounds: int) -> list[tuple[str, int]]:
    """(method, size) of every transfer: per size, rounds of frames, raw, torch (interleaved)."""
    return [(method, n) for n in sizes for _ in range(rounds) for method in METHODS]


def _receiver(port: int, sizes: list[int], rounds: int, max_frame_bytes: int) -> None:
    """The receiving process: receive each transfer, ack it (the sender stops its clock), then,
    untimed, compare it with the tensor sent and prepare the next transfer's buffer; then say
    whether it matched."""
    torch.set_num_threads(1)
    payloads = _payloads(sizes)
    schedule = _schedule(sizes, rounds)
    sock = socket.create_connection((HOST, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    raw: dict[int, bytearray] = {}  # one preallocated buffer, for the size being measured

    def prepare(i: int) -> None:
        if i < len(schedule) and schedule[i][1] not in raw:
            raw.clear()
            n = schedule[i][1]
            raw[n] = bytearray(n)  # zero-filled: its pages are touched here, not while timed

    frame_buffer = ReceiveBuffer()
    with sock:
        prepare(0)
        sock.sendall(b"r")
        got: torch.Tensor | bytearray | None  # the raw method's bytes, a tensor once acked
        for i, (method, n) in enumerate(schedule):
            if method == "frames":
                got = recv_frame(sock, max_frame_bytes=max_frame_bytes, buffer=frame_buffer)[1].get("x")
            elif method == "raw":
                _recv_raw_into(sock, memoryview(raw[n]))
                got = raw[n]
            else:
                got = torch.empty(n // 4, dtype=torch.float32)
                _recv_raw_into(sock, memoryview(got.view(torch.uint8).numpy()))  # type: ignore[arg-type]  # numpy's stubs: a buffer only on 3.12+
            sock.sendall(b"k")
            if isinstance(got, bytearray):  # the raw method
                got = torch.frombuffer(got, dtype=torch.float32)
            ok = got is not None and torch.equal(got.reshape(-1), payloads[n])
            del got  # freeing a large tensor takes ms (munmap): here, untimed
            prepare(i + 1)
            sock.sendall(b"1" if ok else b"0")


def _recv_byte(sock: socket.socket) -> bytes:
    byte = sock.recv(1)
    if not byte:
        raise ConnectionError("the receiving process closed the connection (see its error above)")
    return byte


def measure(sizes: list[int], repeats: int, warmup: int = 1, thp: bool = False) -> list[dict]:
    """Per size: median ms and MB/s of each method, interleaved, over `repeats` timed rounds."""
    rounds = warmup + repeats
    payloads = _payloads(sizes)
    schedule = _schedule(sizes, rounds)
    max_frame_bytes = max(DEFAULT_MAX_FRAME_BYTES, 2 * max(sizes))
    times: dict[tuple[int, str], list[float]] = {(n, m): [] for n in sizes for m in METHODS}
    errors = dict.fromkeys(sizes, 0)
    ctx = multiprocessing.get_context("spawn")  # a fresh process: no torch state shared by fork
    saved_env = os.environ.get("THP_MEM_ALLOC_ENABLE")
    with socket.create_server((HOST, 0)) as listener:
        listener.settimeout(60)
        if thp:  # read by the receiver's torch at its first large allocation
            os.environ["THP_MEM_ALLOC_ENABLE"] = "1"
        try:
            proc = ctx.Process(target=_receiver, args=(listener.getsockname()[1], sizes, rounds, max_frame_bytes),
                               daemon=True)
            proc.start()
        finally:
            if thp:
                if saved_env is None:
                    os.environ.pop("THP_MEM_ALLOC_ENABLE", None)
                else:
                    os.environ["THP_MEM_ALLOC_ENABLE"] = saved_env
        try:
            sender, _ = listener.accept()
        except TimeoutError:
            proc.kill()
            raise SystemExit("error: the receiving process did not connect within 60 s") from None
    try:
        with sender:
            sender.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sender.settimeout(120)
            _recv_byte(sender)  # the receiver is ready
            ack = bytearray(1)
            for i, (method, n) in enumerate(schedule):
                tensor = payloads[n]
                t0 = time.perf_counter()
                if method == "frames":
                    send_frame(sender, {"type": "data"}, {"x": tensor})
                else:
                    sender.sendall(memoryview(tensor.view(torch.uint8).numpy()))  # type: ignore[arg-type]  # numpy's stubs: a buffer only on 3.12+
                if sender.recv_into(ack) != 1:
                    raise ConnectionError("the receiving process closed the connection")
                elapsed = time.perf_counter() - t0
                errors[n] += _recv_byte(sender) != b"1"
                if (i // len(METHODS)) % rounds >= warmup:
                    times[(n, method)].append(elapsed)
    finally:
        proc.join(timeout=30)
        if proc.is_alive():
            proc.kill()
            proc.join()

    rows = []
    for n in sizes:
        row = {"size_bytes": n, "size": size_label(n), "repeats": repeats}
        medians = {m: statistics.median(times[(n, m)]) for m in METHODS}
        for m in METHODS:
            row[f"{m}_ms"] = round(medians[m] * 1e3, 4)
        for m in METHODS:
            row[f"{m}_MBps"] = round(n / 1e6 / medians[m], 1)
        row["frames_vs_raw"] = round(medians["raw"] / medians["frames"], 3)
        row["torch_vs_raw"] = round(medians["raw"] / medians["torch"], 3)
        row["frames_vs_torch"] = round(medians["torch"] / medians["frames"], 3)
        row["errors"] = errors[n]
        rows.append(row)
    return rows


RATIOS = ("frames_vs_raw", "torch_vs_raw", "frames_vs_torch")


def across_runs(per_run: list[dict], sizes: list[int]) -> list[dict]:
    """Per size: the median over the runs of each run's figures; the ratios' least and greatest
    beside; errors summed."""
    rows = []
    for n in sizes:
        mine = [r for r in per_run if r["size_bytes"] == n]
        row = {"size_bytes": n, "size": mine[0]["size"], "repeats": mine[0]["repeats"], "runs": len(mine)}
        for key in [k for k in mine[0] if k.endswith(("_ms", "_MBps")) or k in RATIOS]:
            row[key] = round(statistics.median(r[key] for r in mine), 4 if key.endswith("_ms") else 3)
        for key in RATIOS:
            row[f"{key}_min"] = min(r[key] for r in mine)
            row[f"{key}_max"] = max(r[key] for r in mine)
        row["errors"] = sum(r["errors"] for r in mine)
        rows.append(row)
    return rows


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", type=parse_size, default=[parse_size(s) for s in DEFAULT_SIZES],
                   metavar="SIZE", help=f"tensor sizes, 10^3 multiples (default: {' '.join(DEFAULT_SIZES)})")
    p.add_argument("--repeats", type=int, default=21, help="timed transfers per method and size")
    p.add_argument("--runs", type=int, default=1,
                   help="whole measurements, each with its own receiver; the CSV has their medians (default 1)")
    p.add_argument("--thp", action="store_true",
                   help="receiver with THP_MEM_ALLOC_ENABLE=1 (huge pages for its large tensors)")
    p.add_argument("--out", type=Path, default=None,
                   help="CSV path (default: runs/benchmarks/protocol_throughput.csv, _thp with --thp)")
    args = p.parse_args(argv)
    if args.repeats < 1 or args.runs < 1:
        p.error("--repeats and --runs must be at least 1")
    if args.out is None:
        args.out = RESULTS_DIR / f"protocol_throughput{'_thp' if args.thp else ''}.csv"
    per_run = []
    for run in range(1, args.runs + 1):
        per_run += [{"run": run, **row} for row in measure(args.sizes, args.repeats, thp=args.thp)]
    rows = across_runs(per_run, args.sizes)
    print(f"{'size':>8} {'frames ms':>10} {'raw ms':>9} {'torch ms':>9} {'frames MB/s':>12} "
          f"{'raw MB/s':>9} {'torch MB/s':>11} {'ours/raw':>9} {'torch/raw':>10} {'ours/torch':>11} {'errors':>7}")
    for r in rows:
        print(f"{r['size']:>8} {r['frames_ms']:>10.3f} {r['raw_ms']:>9.3f} {r['torch_ms']:>9.3f} "
              f"{r['frames_MBps']:>12.1f} {r['raw_MBps']:>9.1f} {r['torch_MBps']:>11.1f} "
              f"{r['frames_vs_raw']:>9.2f} {r['torch_vs_raw']:>10.2f} {r['frames_vs_torch']:>11.2f} {r['errors']:>7}")
    meta = provenance(host=HOST, receiver="separate process, 1 torch thread",
                      thp_mem_alloc=int(args.thp), repeats=args.repeats, warmup=1, runs=args.runs,
                      order="interleaved " + ",".join(METHODS),
                      statistic="median of repeats within a run; median of runs across them", mb="10^6 bytes")
    write_csv_with_provenance(args.out, rows, list(rows[0]), meta)
    runs_out = args.out.with_name(f"{args.out.stem}_runs.csv")
    write_csv_with_provenance(runs_out, per_run, list(per_run[0]), meta)
    if args.runs > 1:
        for r in rows:
            print(f"{r['size']:>8}: ours/raw over {args.runs} runs median {r['frames_vs_raw']:.2f} "
                  f"(min {r['frames_vs_raw_min']:.2f}, max {r['frames_vs_raw_max']:.2f})")
    print(f"wrote {args.out} and {runs_out}")
    if any(r["errors"] for r in rows):
        raise SystemExit("error: some received tensors differ from the ones sent")
    return rows


if __name__ == "__main__":
    main()

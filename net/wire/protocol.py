"""The wire protocol: length-prefixed frames of a JSON header and raw tensor bytes.

This is the only module that touches frame bytes. Everything else calls `send_frame` and
`recv_frame` (in the spirit of asyncio's `readexactly(n)` after a length prefix: a frame is
always read whole, so TCP's arbitrary segmentation never shows).

Byte layout of one frame (all integers big-endian, unsigned; docs/PROTOCOL.md has a worked example):

    offset      size  field
    0           8     L, body length in bytes (everything after these 8 bytes)
    8           4     H, header length in bytes
    12          H     header: UTF-8 JSON object; header["tensors"] lists the payload tensors,
                      each {"name": str, "dtype": str, "shape": [int, ...]}
    12 + H      P     payload: each listed tensor's raw bytes, in order, C-contiguous,
                      little-endian; P = sum of their byte sizes and L = 4 + H + P exactly

Only JSON and raw numbers are ever decoded: nothing from the network is unpickled, so a frame
cannot execute code. Sizes are checked with Python ints before anything is allocated, so a
lying length or shape cannot make the receiver allocate more than the frame cap.
"""
from __future__ import annotations

import json
import math
import socket
import struct
import sys
import time
from collections.abc import Callable

import torch

# 2: coded tensors (header["codecs"], net/wire/codecs.py) and the image decoder in the hello
PROTOCOL_VERSION = 2

# Cap on a frame's body; the largest tensor we send (VGG16-BN after its first conv, 12.8 MB in
# float32) fits with room to spare. Receivers may lower or raise it.
DEFAULT_MAX_FRAME_BYTES = 64 * 2**20

# The header is small (< 1 KiB in practice), so once a frame's first byte has arrived the rest
# of the length prefix and the header must follow within this many seconds: a client that opens
# a frame and stalls cannot hold a server's connection for long.
HEADER_TIMEOUT_S = 10.0

# Minimum body rate, in bytes per second (not bits). 8,000 B/s = 0.064 Mbit/s, 17x below 3G's
# 1.1 Mbit/s uplink. It is enforced over every window of RATE_WINDOW_S seconds (not as one total
# deadline from the declared size, which a client declaring 60 MiB and trickling 2 B/s would
# stretch to hours): a legitimate 90 s upload at 3G is never cut off, while a client that
# trickles a byte a second is dropped within two windows.
MIN_RATE_BPS = 8_000
RATE_WINDOW_S = 5.0

MAX_HEADER_BYTES = 2**20  # a header is metadata; 1 MiB is far more than any needs
MAX_TENSOR_DIMS = 8

# The one table of dtypes that may cross the wire.
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int64": torch.int64,
    "int32": torch.int32,
    "uint8": torch.uint8,
    "bool": torch.bool,
}
_DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}

_PREFIX = struct.Struct(">Q")  # L
_HEADER_LEN = struct.Struct(">I")  # H

# Tensor bytes go out and come in as the machine's own memory; the wire order is little-endian.
if sys.byteorder != "little":
    raise ImportError("net.wire.protocol sends tensors as raw little-endian bytes; this machine is big-endian")


class ProtocolError(Exception):
    """A frame that breaks the protocol. `code` is a short snake_case reason for replies and logs:
    frame_too_large, bad_header, bad_tensor, timeout, idle_timeout, truncated, closed, or a code
    raised by a caller's `validate`."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class ConnectionClosed(ProtocolError):
    """The peer closed the connection cleanly between frames (before a frame's first byte)."""

    def __init__(self, message: str = "peer closed the connection"):
        super().__init__("closed", message)


def dtype_name(dtype: torch.dtype) -> str:
    """Wire name of a torch dtype; ProtocolError for a dtype the protocol does not carry."""
    try:
        return _DTYPE_NAMES[dtype]
    except KeyError:
        raise ProtocolError("bad_tensor", f"dtype {dtype} cannot be sent; allowed: {', '.join(DTYPES)}") from None


def peer_text(value, limit: int = 200) -> str:
    """What a peer sent, made safe to print or log: a string (anything else is repr'd), control
    and non-ASCII characters escaped, cut to `limit` characters with a note of how many more."""
    text = value if isinstance(value, str) else repr(value)
    cut = text[:limit]
    escaped = cut.encode("ascii", "backslashreplace").decode("ascii")
    escaped = "".join(c if c.isprintable() else repr(c)[1:-1] for c in escaped)
    more = len(text) - len(cut)
    return escaped + (f"... ({more} more characters)" if more else "")


def tensor_nbytes(dtype: str, shape: list[int]) -> int:
    """Byte size of a tensor from its wire dtype name and shape, in Python ints (no overflow)."""
    return DTYPES[dtype].itemsize * math.prod(shape)


def send_frame(sock: socket.socket, header: dict, tensors: dict[str, torch.Tensor] | None = None,
               pacer=None) -> int:
    """Send one frame: `header` (plain JSON types) and `tensors` as raw bytes.

    header["tensors"] is filled in from `tensors` (the caller's dict is not modified). Tensor
    data is sent straight from each tensor's memory, never joined into one bytes object. With a
    `pacer` (net.emulation.link.LinkPacer) every chunk goes through `pacer.send`. Returns the
    number of bytes written on the wire, 8 + L.
    """
    tensors = tensors or {}
    entries, views = [], []
    for name, tensor in tensors.items():
        if not isinstance(name, str):
            raise ProtocolError("bad_tensor", f"tensor names must be strings, got {name!r}")
        entries.append({"name": name, "dtype": dtype_name(tensor.dtype), "shape": list(tensor.shape)})
        # reshape(-1) also turns a 0-dim tensor into one element; bool has 1-byte elements.
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        views.append(memoryview(flat.view(torch.uint8).numpy()))  # type: ignore[arg-type]  # numpy's stubs: a buffer only on 3.12+
    header_bytes = json.dumps({**header, "tensors": entries}, separators=(",", ":")).encode("utf-8")
    if len(header_bytes) > MAX_HEADER_BYTES:
        raise ProtocolError("bad_header", f"header is {len(header_bytes)} bytes, more than {MAX_HEADER_BYTES}")
    body_len = _HEADER_LEN.size + len(header_bytes) + sum(v.nbytes for v in views)

    send = sock.sendall if pacer is None else (lambda data: pacer.send(sock, data))
    send(memoryview(_PREFIX.pack(body_len) + _HEADER_LEN.pack(len(header_bytes)) + header_bytes))
    for view in views:
        if view.nbytes:
            send(view)
    return _PREFIX.size + body_len


class ReceiveBuffer:
    """Memory that `recv_frame` reads tensors into, reused frame after frame on one connection.

    A fresh allocation per frame pays a page fault for every 4 KiB page it is written into
    (a 100 MB tensor: ~25,000 faults, half the time of the transfer on loopback); a buffer that
    only grows pays them once. Tensors received into it are views of it, valid until the next
    `recv_frame` with the same buffer: use them (or copy them) before receiving again.
    """

    ALIGN = 64  # each tensor starts on a cache line, so any dtype can view its bytes

    def __init__(self) -> None:
        self._storage = torch.empty(0, dtype=torch.uint8)

    def tensors(self, specs: list[tuple[str, str, list[int]]]) -> dict[str, torch.Tensor]:
        offsets, total = [], 0
        for _, dtype, shape in specs:
            offsets.append(total)
            total += -(-tensor_nbytes(dtype, shape) // self.ALIGN) * self.ALIGN
        if self._storage.numel() < total:
            self._storage = torch.empty(total, dtype=torch.uint8)
        return {name: self._storage[offset:offset + tensor_nbytes(dtype, shape)].view(DTYPES[dtype]).reshape(shape)
                for (name, dtype, shape), offset in zip(specs, offsets)}


def recv_frame(sock: socket.socket, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
               validate: Callable[[dict], None] | None = None, idle_timeout_s: float | None = None,
               header_timeout_s: float = HEADER_TIMEOUT_S, min_rate_bps: float = MIN_RATE_BPS,
               buffer: ReceiveBuffer | None = None, rate_window_s: float = RATE_WINDOW_S,
               deadline: float | None = None) -> tuple[dict, dict[str, torch.Tensor]]:
    """Receive one frame; return (header, {name: tensor}).

    Waits up to `idle_timeout_s` (None: forever) for the first byte; then the length prefix and
    header must arrive within `header_timeout_s`, and the tensor bytes at `min_rate_bps` (bytes
    per second) or more over every window of `rate_window_s` seconds. `deadline` (a
    time.monotonic() value), if given, bounds the whole frame, first byte included.
    `validate(header)`, if given, runs after the header is checked and before any tensor byte is
    read or allocated; whatever it raises propagates and the body stays unread in the socket,
    so the caller must then close the connection (the stream is no longer at a frame boundary).
    The same holds for every ProtocolError except ConnectionClosed.

    Raises ConnectionClosed on a clean close before the first byte, ProtocolError otherwise
    (codes: frame_too_large, bad_header, bad_tensor, idle_timeout, timeout, truncated).
    The socket's own timeout is restored on return.
    """
    saved_timeout = sock.gettimeout()
    try:
        first = bytearray(1)
        wait_s = idle_timeout_s
        if deadline is not None:
            wait_s = max(1e-3, min(deadline - time.monotonic(), wait_s if wait_s is not None else math.inf))
        sock.settimeout(wait_s)
        try:
            if sock.recv_into(first) == 0:
                raise ConnectionClosed()
        except TimeoutError:
            if deadline is not None and (idle_timeout_s is None or (wait_s is not None and wait_s < idle_timeout_s)):
                raise ProtocolError("timeout", f"no frame within {wait_s:.3g} s") from None
            raise ProtocolError("idle_timeout", f"no frame within {idle_timeout_s} s") from None

        header_deadline = time.monotonic() + header_timeout_s
        if deadline is not None:
            header_deadline = min(header_deadline, deadline)
        (body_len,) = _PREFIX.unpack(first + _recv_exactly(sock, _PREFIX.size - 1, header_deadline))
        if body_len > max_frame_bytes:
            raise ProtocolError("frame_too_large", f"frame body of {body_len} bytes exceeds the cap of {max_frame_bytes}")
        if body_len < _HEADER_LEN.size:
            raise ProtocolError("bad_header", f"frame body of {body_len} bytes is shorter than a header length")
        (header_len,) = _HEADER_LEN.unpack(_recv_exactly(sock, _HEADER_LEN.size, header_deadline))
        if header_len > body_len - _HEADER_LEN.size or header_len > MAX_HEADER_BYTES:
            raise ProtocolError("bad_header", f"header length {header_len} does not fit a {body_len}-byte body")
        header = _parse_header(_recv_exactly(sock, header_len, header_deadline))
        payload_len = body_len - _HEADER_LEN.size - header_len
        specs = _check_tensors(header, payload_len)

        if validate is not None:
            validate(header)

        pace = _RateWindow(min_rate_bps, rate_window_s, payload_len)
        if buffer is not None:
            tensors = buffer.tensors(specs)
        else:
            tensors = {name: torch.empty(shape, dtype=DTYPES[dtype]) for name, dtype, shape in specs}
        for tensor in tensors.values():
            view = memoryview(tensor.reshape(-1).view(torch.uint8).numpy())  # type: ignore[arg-type]  # numpy's stubs: a buffer only on 3.12+
            _recv_exactly_into(sock, view, deadline, pace)
        return header, tensors
    finally:
        sock.settimeout(saved_timeout)


def _recv_exactly(sock: socket.socket, n: int, deadline: float) -> bytearray:
    buf = bytearray(n)
    _recv_exactly_into(sock, memoryview(buf), deadline)
    return buf


class _RateWindow:
    """The minimum rate of a frame's body, judged over consecutive windows of `window_s`: each
    window must bring min_rate_bps x window_s bytes, or what is left of the body if less."""

    def __init__(self, min_rate_bps: float, window_s: float, total_bytes: int):
        self.min_rate_bps, self.window_s, self.left = min_rate_bps, window_s, total_bytes
        self._open(time.monotonic())

    def _open(self, now: float) -> None:
        self.end, self.got = now + self.window_s, 0
        self.need = min(self.min_rate_bps * self.window_s, self.left)

    def add(self, n: int) -> None:
        self.got += n
        self.left -= n

    def seconds_left(self, now: float) -> float:
        """Time left in the current window; opens the next one, or raises timeout when the
        window that ended brought too little."""
        if now >= self.end:
            if self.got < self.need:
                raise ProtocolError("timeout", f"peer too slow: {self.got} bytes in {self.window_s:g} s, below "
                                               f"the minimum of {self.min_rate_bps:g} B/s")
            self._open(now)
        return self.end - now


def _recv_exactly_into(sock: socket.socket, view: memoryview, deadline: float | None,
                       pace: _RateWindow | None = None) -> None:
    """Fill `view` from the socket, or raise timeout (deadline passed, or a rate window brought
    too little) / truncated (peer closed)."""
    got, armed_s = 0, None
    while got < view.nbytes:
        now = time.monotonic()
        remaining = math.inf if deadline is None else deadline - now
        if remaining <= 0:
            raise ProtocolError("timeout", f"peer too slow: {got} of {view.nbytes} bytes arrived in time")
        if pace is not None:
            remaining = min(remaining, pace.seconds_left(now))
        # settimeout costs two fcntl calls: re-arm only when the limit has come 10% closer (or
        # moved much further, a new rate window), so a fast transfer is one recv_into per chunk,
        # not three syscalls more each. A slow peer can then overrun a limit by 10% of it.
        if armed_s is None or remaining < 0.9 * armed_s or remaining > 2 * armed_s:
            sock.settimeout(remaining)
            armed_s = remaining
        try:
            n = sock.recv_into(view[got:])
        except TimeoutError:
            continue  # the loop decides: deadline passed, window short, or wait on
        if n == 0:
            raise ProtocolError("truncated", f"peer closed mid-frame after {got} of {view.nbytes} bytes")
        got += n
        if pace is not None:
            pace.add(n)


def _parse_header(raw: bytes | bytearray) -> dict:
    try:
        header = json.loads(raw.decode("utf-8"))  # decode first: json.loads(bytes) also guesses UTF-16/32
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ProtocolError("bad_header", f"header is not UTF-8 JSON ({type(e).__name__})") from None
    if not isinstance(header, dict):
        raise ProtocolError("bad_header", f"header must be a JSON object, got {type(header).__name__}")
    return header


def _check_tensors(header: dict, payload_len: int) -> list[tuple[str, str, list[int]]]:
    """Check header["tensors"] and that their sizes add up to the payload exactly; no allocation."""
    entries = header.get("tensors")
    if not isinstance(entries, list):
        raise ProtocolError("bad_header", 'header["tensors"] must be a list')
    specs, names, total = [], set(), 0
    for entry in entries:
        if not isinstance(entry, dict):
            raise ProtocolError("bad_tensor", f"tensor entry must be an object, got {entry!r:.80}")
        name, dtype, shape = entry.get("name"), entry.get("dtype"), entry.get("shape")
        if not isinstance(name, str) or name in names:
            raise ProtocolError("bad_tensor", f"tensor name must be a unique string, got {name!r:.80}")
        if not isinstance(dtype, str) or dtype not in DTYPES:  # a list or object is not hashable
            raise ProtocolError("bad_tensor", f"tensor {name!r}: dtype {dtype!r:.40} not one of {', '.join(DTYPES)}")
        if (not isinstance(shape, list) or len(shape) > MAX_TENSOR_DIMS
                or not all(type(d) is int and d >= 0 for d in shape)):  # type() is int: rejects true/false
            raise ProtocolError("bad_tensor", f"tensor {name!r}: shape must be a list of at most "
                                              f"{MAX_TENSOR_DIMS} non-negative ints, got {shape!r:.80}")
        if math.prod(max(d, 1) for d in shape) >= 2**63:  # an empty tensor can still have huge dims
            raise ProtocolError("bad_tensor", f"tensor {name!r}: shape {shape!r:.80} is too large for a tensor")
        total += tensor_nbytes(dtype, shape)
        names.add(name)
        specs.append((name, dtype, shape))
    if total != payload_len:
        raise ProtocolError("bad_tensor", f"tensors declare {total} bytes but the frame carries {payload_len}")
    return specs

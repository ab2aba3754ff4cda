"""The edge's connection to a cloud: hello, inference requests, bandwidth probes.

One persistent connection carries many requests. With a pacer (net.emulation.link) every byte the edge
sends is shaped to the emulated uplink, and `rtt_ms` is paid once per request.
"""
from __future__ import annotations

import contextlib
import math
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeGuard

import torch

from net.emulation.link import NETWORK_PRESETS_MBPS, LinkPacer
from net.wire import auth, codecs
from net.wire.protocol import PROTOCOL_VERSION, ProtocolError, peer_text, recv_frame, send_frame

CONNECT_TIMEOUT_S = 5.0
# --timeout: how long the cloud may take to answer a request (its compute: VGG16-BN on a slow
# server, or a model it builds on first use, takes seconds) on top of the expected upload time.
# The handshake gets this much in all. A cloud that goes silent costs the edge no more.
DEFAULT_TIMEOUT_S = 10.0
# The upload is expected at the link's rate (the pacer's, else `expected_mbps`), allowed twice
# that time for a noisy link; where no rate is known, at 3G's, the slowest preset.
UPLOAD_TIME_MARGIN = 2.0
UNKNOWN_RATE_MBPS = NETWORK_PRESETS_MBPS["3g"]
# What a reply can hold: a small header (top-5, times, a MAC) and at most the logits, one float32
# per class. Anything declaring more is refused from its header, before its body is read.
REPLY_HEADER_BYTES = 64 * 1024
MAX_CLASSES = 2**16  # the bound on a model's classes where the client was not told its count
# An upload expected to take longer than this is announced (through `notify`) before it starts.
SLOW_UPLOAD_NOTE_S = 2.0


# Error codes that mean "this request is wrong", not "the cloud is unavailable": falling back to
# local inference would hide a mistake the user must fix (e.g. different weights on each side).
REFUSALS = frozenset({"unknown_model", "weights_mismatch", "bad_cut", "bad_tensor", "bad_request",
                      "version_mismatch", "auth_required", "auth_failed"})


class CloudUnavailable(Exception):
    """The cloud cannot be reached, is busy, or the connection broke: the edge may fall back."""


class CloudRefused(Exception):
    """The cloud understood the request and refused it (wrong weights, bad cut, ...)."""

    def __init__(self, code: str, message: str):
        super().__init__(f"cloud refused the request ({code}): {message}")
        self.code = code


def _raise_if_error(reply: dict, where: str) -> None:
    if reply.get("type") != "error":
        return
    # what the cloud says is printed: cut and escaped, whatever it sent
    code, message = peer_text(reply.get("code"), 40), peer_text(reply.get("message"), 300)
    if code in REFUSALS:
        raise CloudRefused(code, message)
    raise CloudUnavailable(f"cloud at {where} could not serve the request ({code}): {message}")


class BadReply(ValueError):
    """A reply that breaks what the protocol promises (a field missing, of the wrong type, out of
    range, not finite): the request failed, as if the connection had."""


def _is_number(value) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def reply_limits(want_logits: bool, num_classes: int | None):
    """(max frame bytes, validate) for an infer reply: checked from its header, before its body
    is read. A result carries no tensor, or, when asked, float32 logits of shape [1, classes]."""
    classes = num_classes or MAX_CLASSES
    max_bytes = REPLY_HEADER_BYTES + (4 * classes if want_logits else 0)

    def validate(header: dict) -> None:
        entries = header["tensors"]
        if not entries:
            return
        ok = (want_logits and header.get("type") == "result" and len(entries) == 1
              and entries[0]["name"] == "logits" and entries[0]["dtype"] == "float32"
              and len(entries[0]["shape"]) == 2 and entries[0]["shape"][0] == 1
              and 1 <= entries[0]["shape"][1] <= classes
              and (num_classes is None or entries[0]["shape"][1] == num_classes))
        if not ok:
            raise ProtocolError("bad_reply", f"the reply carries tensors it cannot hold: {peer_text(entries, 120)}")
    return max_bytes, validate


def check_result(reply: dict, tensors: dict[str, torch.Tensor], wall_ms: float,
                 num_classes: int | None) -> tuple[list[list], float, torch.Tensor | None]:
    """(top5, cloud_ms, logits) of a result reply, every field checked; BadReply otherwise."""
    if reply.get("type") != "result":
        raise BadReply(f"expected a result, got type {peer_text(reply.get('type'), 40)}")
    cloud_ms = reply.get("cloud_ms")
    if not _is_number(cloud_ms) or not 0 <= cloud_ms <= wall_ms:
        raise BadReply(f"cloud_ms must be a number of ms within the request's {wall_ms:.1f} ms, "
                       f"got {peer_text(cloud_ms, 40)}")
    logits = tensors.get("logits")
    if logits is not None and not bool(torch.isfinite(logits).all()):
        raise BadReply("the logits are not all finite")
    classes = logits.shape[-1] if logits is not None else (num_classes or MAX_CLASSES)
    top5 = reply.get("top5")
    if not isinstance(top5, list) or not 1 <= len(top5) <= 5:
        raise BadReply(f"top5 must be a list of 1 to 5 [class, probability] pairs, got {peer_text(top5, 80)}")
    pairs = []
    for pair in top5:
        if not (isinstance(pair, list) and len(pair) == 2 and type(pair[0]) is int
                and 0 <= pair[0] < classes and _is_number(pair[1]) and 0 <= pair[1] <= 1 + 1e-9):
            raise BadReply(f"top5 entry {peer_text(pair, 60)} is not [a class in 0..{classes - 1}, "
                           "a probability in 0..1]")
        pairs.append([pair[0], float(pair[1])])
    return pairs, float(cloud_ms), logits


class _DeadlineSender:
    """A send_frame `pacer` that fails with TimeoutError once `deadline` has passed: a cloud
    that stops reading cannot hold the edge in a blocked send. Wraps the link's pacer, if any."""

    PIECE_BYTES = 2**20  # the socket's timeout is re-armed to what is left at least this often

    def __init__(self, deadline: float, pacer: LinkPacer | None):
        self.deadline, self.pacer = deadline, pacer

    def send(self, sock: socket.socket, data) -> None:
        data = memoryview(data).cast("B")
        for start in range(0, data.nbytes, self.PIECE_BYTES):
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the request could not be sent in time")
            sock.settimeout(remaining)
            piece = data[start:start + self.PIECE_BYTES]
            if self.pacer is not None:
                self.pacer.send(sock, piece)
            else:
                sock.sendall(piece)


@dataclass(frozen=True)
class InferReply:
    top5: list[list]
    logits: torch.Tensor | None
    cloud_ms: float           # the cloud's own compute time
    transfer_ms: float        # first byte sent .. last byte of the reply, minus cloud_ms and decode_ms
    transfer_bytes: int       # bytes of the request frame on the wire
    decode_ms: float = 0.0    # the cloud's time to decode the coded tensors


class CloudClient:
    """One connection to a cloud (reopened on the next request after a failure). Not shared
    between threads: each thread that talks to a cloud has its own client."""

    def __init__(self, host: str, port: int, pacer: LinkPacer | None = None,
                 rtt_ms: float = 0.0, connect_timeout_s: float = CONNECT_TIMEOUT_S,
                 timeout_s: float = DEFAULT_TIMEOUT_S, token: bytes | None = None,
                 weights: tuple[str, str] | None = None, expected_mbps: float | None = None,
                 num_classes: dict[str, int] | None = None):
        """weights: (model, fingerprint) to check in the handshake, so that a cloud holding other
        weights refuses at connect time, naming both fingerprints. timeout_s: what the cloud may
        take beyond the expected upload (DEFAULT_TIMEOUT_S); expected_mbps: the uplink's rate
        where no pacer shapes it (may be set later, e.g. once measured); num_classes: per model,
        so that a reply naming a class beyond them is refused."""
        self.token, self.weights = token, weights
        self.timeout_s, self.expected_mbps = timeout_s, expected_mbps
        self.num_classes = dict(num_classes or {})
        self.notify: Callable[[str], None] | None = None  # notify(text): told before an upload expected to take a while
        self.cloud_load = 1.0  # the load factor of the cloud's latest reply (net/load.py)...
        self.cloud_load_at = 0.0  # ...and when it came (time.monotonic())
        self._channel: auth.SecureChannel | None = None
        self.host, self.port = host, port
        self.pacer, self.rtt_ms = pacer, rtt_ms
        self.connect_timeout_s = connect_timeout_s
        self._sock: socket.socket | None = None
        # the cloud's image decoder, from its hello: `file` is exact only where it equals ours
        self.cloud_image_decoder: str | None = None

    @property
    def same_image_decoder(self) -> bool:
        return self.cloud_image_decoder == codecs.image_decoder()

    def _upload_rate_mbps(self) -> float:
        return self.pacer.rate_mbps if self.pacer is not None else (self.expected_mbps or UNKNOWN_RATE_MBPS)

    def _deadline(self, upload_bytes: int = 0) -> float:
        """When a request sending `upload_bytes` must have its reply: timeout_s after the
        expected upload time (x UPLOAD_TIME_MARGIN)."""
        upload_s = upload_bytes * 8 / (self._upload_rate_mbps() * 1e6) * UPLOAD_TIME_MARGIN
        return time.monotonic() + self.timeout_s + upload_s

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def connect(self) -> None:
        if self._sock is not None:
            return
        deadline = self._deadline()
        try:
            sock = socket.create_connection((self.host, self.port), timeout=min(self.connect_timeout_s, self.timeout_s))
        except OSError as e:
            raise CloudUnavailable(f"cloud unreachable at {self.where}: {e.strerror or e}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        try:
            self._channel = self._handshake(sock, deadline)
        except (OSError, ProtocolError) as e:
            self.close()
            raise CloudUnavailable(f"handshake with the cloud at {self.where} failed: {e}") from None
        except CloudRefused:
            self.close()
            raise
        # Reads set their own deadlines (net.wire.protocol); a send may take as long as the link needs
        # (12.8 MB at 3G: 93 s), so the connect timeout must not cap it.
        sock.settimeout(None)

    def _handshake(self, sock: socket.socket, deadline: float) -> auth.SecureChannel | None:
        """hello (and, with a token, the challenge-response of net/auth.py)."""
        client_nonce = auth.new_nonce()
        hello = {"type": "hello", "version": PROTOCOL_VERSION}
        if self.weights is not None:
            hello["model"], hello["fingerprint"] = self.weights
        if self.token is not None:
            hello["client_nonce"] = client_nonce
        hello["image_decoder"] = codecs.image_decoder()
        send_frame(sock, hello)
        reply, _ = recv_frame(sock, max_frame_bytes=REPLY_HEADER_BYTES, deadline=deadline)
        _raise_if_error(reply, self.where)
        if reply.get("version") != PROTOCOL_VERSION:
            raise CloudRefused("version_mismatch", f"the cloud at {self.where} speaks protocol version "
                                                   f"{peer_text(reply.get('version'), 20)}, this edge speaks "
                                                   f"{PROTOCOL_VERSION}: run the same release on both")
        decoder = reply.get("image_decoder")
        self.cloud_image_decoder = decoder if isinstance(decoder, str) else None
        self._note_load(reply)
        server_nonce = reply.get("server_nonce")
        if self.token is None:
            if server_nonce is not None:
                raise CloudRefused("auth_required", f"the cloud at {self.where} requires a token: "
                                                    f"give --token or set {auth.TOKEN_ENV}")
            return None
        if not (auth.valid_nonce(server_nonce) and auth.proofs_match(
                auth.proof(self.token, "cloud", client_nonce, server_nonce), reply.get("server_proof"))):
            raise CloudRefused("auth_failed", f"the server at {self.where} did not prove it holds the "
                                              "token (another token, or no token on the cloud)")
        send_frame(sock, {"type": "auth", "client_proof": auth.proof(self.token, "edge", client_nonce, server_nonce)})
        channel = auth.SecureChannel(self.token, client_nonce, server_nonce, is_client=True)
        try:
            ok, _ = channel.recv(sock, max_frame_bytes=REPLY_HEADER_BYTES, deadline=deadline)
        except ProtocolError as e:
            if e.code == "bad_mac":  # an unauthenticated error reply: the cloud refused our proof
                raise CloudRefused("auth_failed", f"the cloud at {self.where} refused the token") from None
            raise
        _raise_if_error(ok, self.where)
        return channel

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self._channel = None

    def __enter__(self) -> CloudClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _request(self, header: dict, tensors: dict[str, torch.Tensor] | None,
                 limits=(REPLY_HEADER_BYTES, None)) -> tuple[dict, dict, int, float]:
        """Send one request, wait for its reply: (reply, tensors, bytes sent, wall ms incl. RTT).
        limits: (max reply bytes, validate(reply header)), checked before the reply's body."""
        if self._sock is None:
            self.connect()
        assert self._sock is not None  # connect() sets it or raises
        send = self._channel.send if self._channel else send_frame
        receive = self._channel.recv if self._channel else (lambda s, **kw: recv_frame(s, **kw))
        upload = sum(t.numel() * t.element_size() for t in (tensors or {}).values())
        deadline = self._deadline(upload)
        expected_s = upload * 8 / (self._upload_rate_mbps() * 1e6)
        if self.notify is not None and expected_s > SLOW_UPLOAD_NOTE_S and header.get("type") != "probe":
            self.notify(f"sending {upload:,} bytes to the cloud at {self.where} at {self._upload_rate_mbps():g} "
                        f"Mbit/s: about {expected_s:.0f} s (then up to {self.timeout_s:g} s for the answer)")
        max_bytes, validate = limits
        try:
            t0 = time.perf_counter()
            try:
                with self.pacer.exclusive() if self.pacer is not None else contextlib.nullcontext():
                    sent = send(self._sock, header, tensors, _DeadlineSender(deadline, self.pacer))
            except TimeoutError:
                raise
            except OSError:  # the cloud may have refused the frame mid-upload: read why it did
                sent = 0
                reply, reply_tensors = receive(self._sock, max_frame_bytes=REPLY_HEADER_BYTES,
                                               deadline=min(deadline, time.monotonic() + 1.0))
            else:
                reply, reply_tensors = receive(self._sock, max_frame_bytes=max_bytes, validate=validate,
                                               deadline=deadline)
            if self.rtt_ms:
                time.sleep(self.rtt_ms / 1e3)  # emulated propagation, paid once per request
            wall_ms = (time.perf_counter() - t0) * 1e3
        except TimeoutError:
            self.close()
            raise CloudUnavailable(f"the cloud at {self.where} did not answer within the "
                                   f"{self.timeout_s:g} s timeout (plus the expected upload time)") from None
        except (OSError, ProtocolError) as e:
            self.close()  # the stream may be mid-frame: a new request needs a new connection
            if isinstance(e, ProtocolError) and e.code == "timeout":
                raise CloudUnavailable(f"the cloud at {self.where} did not answer within the {self.timeout_s:g} s "
                                       f"timeout (plus the expected upload time): {e}") from None
            raise CloudUnavailable(f"connection to the cloud at {self.where} failed: {e}") from None
        if reply.get("type") == "error":
            self.close()  # the cloud closes after refusing a request whose body it did not read
            _raise_if_error(reply, self.where)
        self._note_load(reply)
        return reply, reply_tensors, sent, wall_ms

    def _note_load(self, reply: dict) -> None:
        load = reply.get("load")
        if isinstance(load, (int, float)) and 1.0 <= load < 1e6:
            self.cloud_load, self.cloud_load_at = float(load), time.monotonic()

    def infer(self, model: str, fingerprint: str, cut: int, x: torch.Tensor,
              want_logits: bool = False) -> InferReply:
        """A chain model at cut k: the edge ran units 1..k and sends their output."""
        return self.infer_tensors(model, fingerprint, {"x": x}, want_logits, cut=cut)

    def infer_tensors(self, model: str, fingerprint: str, tensors: dict[str, torch.Tensor],
                      want_logits: bool = False, cut: int | None = None,
                      codec_specs: dict[str, dict] | None = None) -> InferReply:
        """Any model: the named tensors the edge sends (for a DAG model, node outputs by node
        name; the cloud runs what the output still needs). codec_specs: header["codecs"] for
        tensors sent coded (net/wire/codecs.py)."""
        header = {"type": "infer", "model": model, "fingerprint": fingerprint, "want_logits": want_logits}
        if cut is not None:
            header["cut"] = cut
        if codec_specs:
            header["codecs"] = codec_specs
        tensors = {name: t.contiguous() for name, t in tensors.items()}
        num_classes = self.num_classes.get(model)
        reply, tensors, sent, wall_ms = self._request(header, tensors, reply_limits(want_logits, num_classes))
        try:
            top5, cloud_ms, logits = check_result(reply, tensors, wall_ms, num_classes)
        except BadReply as e:  # a failed request (the caller retries, then falls back), not a crash
            self.close()
            raise CloudUnavailable(f"the cloud at {self.where} sent a malformed result: {e}") from None
        decode_ms = reply.get("decode_ms", 0.0)
        if not _is_number(decode_ms) or not 0 <= decode_ms <= wall_ms - cloud_ms:
            self.close()
            raise CloudUnavailable(f"the cloud at {self.where} sent a malformed result: decode_ms "
                                   f"{peer_text(decode_ms, 40)} is not within the request's time")
        return InferReply(top5, logits, cloud_ms, wall_ms - cloud_ms - decode_ms, sent, float(decode_ms))

    def stats(self) -> dict:
        """The cloud's counters: {"served": inference requests answered, "pid": its process}."""
        reply, _, _, _ = self._request({"type": "stats"}, None)
        return reply

    def probe(self, nbytes: int) -> float:
        """Send `nbytes` of probe data; return the wall ms until the cloud's acknowledgement."""
        data = {"data": torch.zeros(nbytes, dtype=torch.uint8)}
        if self.pacer is None:
            return self._request({"type": "probe"}, data)[3]
        # Time this probe alone: no other frame shares the link with it, and none is left on it
        # (a frame leaves the link only when its last chunk has crossed it).
        with self.pacer.exclusive():
            return self._request({"type": "probe"}, data)[3]

"""The edge's connection to a cloud: hello, inference requests, bandwidth probes.

One persistent connection carries many requests. With a pacer (net.emulation.link) every byte the edge
sends is shaped to the emulated uplink, and `rtt_ms` is paid once per request.
"""
from __future__ import annotations

import socket
import time
from dataclasses import dataclass

import torch

from net.emulation.link import LinkPacer
from net.wire import auth
from net.wire.protocol import PROTOCOL_VERSION, ProtocolError, recv_frame, send_frame

CONNECT_TIMEOUT_S = 5.0
# Waiting for a reply covers the cloud's compute (VGG16-BN on a slow server: seconds), not the
# upload, which is sent before the wait starts.
REPLY_TIMEOUT_S = 120.0


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
    code, message = str(reply.get("code")), str(reply.get("message"))
    if code in REFUSALS:
        raise CloudRefused(code, message)
    raise CloudUnavailable(f"cloud at {where} could not serve the request ({code}): {message}")


@dataclass(frozen=True)
class InferReply:
    top5: list[list]
    logits: torch.Tensor | None
    cloud_ms: float           # the cloud's own compute time
    transfer_ms: float        # first byte sent .. last byte of the reply, minus cloud_ms
    transfer_bytes: int       # bytes of the request frame on the wire


class CloudClient:
    """One connection to a cloud (reopened on the next request after a failure). Not shared
    between threads: each thread that talks to a cloud has its own client."""

    def __init__(self, host: str, port: int, pacer: LinkPacer | None = None,
                 rtt_ms: float = 0.0, connect_timeout_s: float = CONNECT_TIMEOUT_S,
                 reply_timeout_s: float = REPLY_TIMEOUT_S, token: bytes | None = None,
                 weights: tuple[str, str] | None = None):
        """weights: (model, fingerprint) to check in the handshake, so that a cloud holding other
        weights refuses at connect time, naming both fingerprints."""
        self.token, self.weights = token, weights
        self.cloud_load = 1.0  # the load factor of the cloud's latest reply (net/load.py)...
        self.cloud_load_at = 0.0  # ...and when it came (time.monotonic())
        self._channel: auth.SecureChannel | None = None
        self.host, self.port = host, port
        self.pacer, self.rtt_ms = pacer, rtt_ms
        self.connect_timeout_s, self.reply_timeout_s = connect_timeout_s, reply_timeout_s
        self._sock: socket.socket | None = None

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def connect(self) -> None:
        if self._sock is not None:
            return
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout_s)
        except OSError as e:
            raise CloudUnavailable(f"cloud unreachable at {self.where}: {e.strerror or e}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        try:
            self._channel = self._handshake(sock)
        except (OSError, ProtocolError) as e:
            self.close()
            raise CloudUnavailable(f"handshake with the cloud at {self.where} failed: {e}") from None
        except CloudRefused:
            self.close()
            raise
        # Reads set their own deadlines (net.wire.protocol); a send may take as long as the link needs
        # (12.8 MB at 3G: 93 s), so the connect timeout must not cap it.
        sock.settimeout(None)

    def _handshake(self, sock: socket.socket) -> auth.SecureChannel | None:
        """hello (and, with a token, the challenge-response of net/auth.py)."""
        client_nonce = auth.new_nonce()
        hello = {"type": "hello", "version": PROTOCOL_VERSION}
        if self.weights is not None:
            hello["model"], hello["fingerprint"] = self.weights
        if self.token is not None:
            hello["client_nonce"] = client_nonce
        send_frame(sock, hello)
        reply, _ = recv_frame(sock, idle_timeout_s=self.reply_timeout_s)
        _raise_if_error(reply, self.where)
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
            ok, _ = channel.recv(sock, idle_timeout_s=self.reply_timeout_s)
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

    def _request(self, header: dict, tensors: dict[str, torch.Tensor] | None) -> tuple[dict, dict, int, float]:
        """Send one request, wait for its reply: (reply, tensors, bytes sent, wall ms incl. RTT)."""
        if self._sock is None:
            self.connect()
        send = self._channel.send if self._channel else send_frame
        receive = self._channel.recv if self._channel else (lambda s, **kw: recv_frame(s, **kw))
        try:
            t0 = time.perf_counter()
            try:
                sent = send(self._sock, header, tensors, self.pacer)
            except OSError:  # the cloud may have refused the frame mid-upload: read why it did
                sent = 0
                reply, reply_tensors = receive(self._sock, idle_timeout_s=1.0)
            else:
                reply, reply_tensors = receive(self._sock, idle_timeout_s=self.reply_timeout_s)
            if self.rtt_ms:
                time.sleep(self.rtt_ms / 1e3)  # emulated propagation, paid once per request
            wall_ms = (time.perf_counter() - t0) * 1e3
        except (OSError, ProtocolError) as e:
            self.close()  # the stream may be mid-frame: a new request needs a new connection
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
                      want_logits: bool = False, cut: int | None = None) -> InferReply:
        """Any model: the named tensors the edge sends (for a DAG model, node outputs by node
        name; the cloud runs what the output still needs)."""
        header = {"type": "infer", "model": model, "fingerprint": fingerprint, "want_logits": want_logits}
        if cut is not None:
            header["cut"] = cut
        tensors = {name: t.contiguous() for name, t in tensors.items()}
        reply, tensors, sent, wall_ms = self._request(header, tensors)
        cloud_ms = float(reply["cloud_ms"])
        return InferReply(reply["top5"], tensors.get("logits"), cloud_ms, wall_ms - cloud_ms, sent)

    def stats(self) -> dict:
        """The cloud's counters: {"served": inference requests answered, "pid": its process}."""
        reply, _, _, _ = self._request({"type": "stats"}, None)
        return reply

    def probe(self, nbytes: int) -> float:
        """Send `nbytes` of probe data; return the wall ms until the cloud's acknowledgement."""
        if self.pacer is not None:
            time.sleep(self.pacer.seconds_until_idle())  # time this probe alone, not what is queued
        _, _, _, wall_ms = self._request({"type": "probe"}, {"data": torch.zeros(nbytes, dtype=torch.uint8)})
        return wall_ms

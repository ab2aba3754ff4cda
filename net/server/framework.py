"""A threaded TCP server of frames: one thread per connection, many requests per connection.

Subclasses map message types to handlers. A handler gets (header, tensors) of one request and
returns (reply header, reply tensors). What the server keeps per connection lives and dies with
the connection (its receive buffer; with a token, its session key): nothing a request depends on
outlives it, so any process behind a load balancer can answer any new connection.
"""
from __future__ import annotations

import logging
import select
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from typing import Self, cast

import torch

from net.server.load import LoadMeter
from net.wire import auth
from net.wire.protocol import (
    DEFAULT_MAX_FRAME_BYTES,
    HEADER_TIMEOUT_S,
    MIN_RATE_BPS,
    RATE_WINDOW_S,
    ConnectionClosed,
    ProtocolError,
    ReceiveBuffer,
    peer_text,
    recv_frame,
    send_frame,
)

log = logging.getLogger("neurosurgeon.server")

Reply = tuple[dict, dict[str, torch.Tensor] | None]
Handler = Callable[[dict, dict[str, torch.Tensor]], Reply]

# A connection that sends nothing for this long between requests is closed; an edge reconnects.
DEFAULT_IDLE_TIMEOUT_S = 300.0
DEFAULT_MAX_CONNECTIONS = 64
HANDSHAKE_MAX_BYTES = 64 * 1024  # a hello or auth frame is a few hundred bytes
STOP_POLL_S = 0.25  # how soon an idle connection notices that the server is stopping
# A stopping server cuts a connection still receiving a request after this long: a slow upload
# (or a client trickling bytes) must not stretch a SIGTERM; requests already received finish.
STOP_RECEIVE_GRACE_S = 1.0
# The hello fields read before a token is proved: nothing that makes the server build a model.
PRE_AUTH_FIELDS = ("type", "version", "client_nonce", "tensors")


class RequestError(ProtocolError):
    """A well-formed frame with a request the server refuses (unknown model, wrong shape, ...).
    With `close`, the connection is closed after the error reply (a peer sending such a frame,
    e.g. a coded tensor that expands past its declared size, is not served again)."""

    def __init__(self, code: str, message: str, close: bool = False):
        super().__init__(code, message)
        self.close = close


class _ConnectionHandler(socketserver.BaseRequestHandler):
    server: FrameServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not self.server.admit(sock):
            _reply_error(sock, "busy", f"{self.server.role} is stopping or at its limit of "
                                       f"{self.server.max_connections} connections")
            return
        try:
            self.server.serve_connection(sock)
        finally:
            self.server.release(sock)


# After refusing a frame whose body it did not read, the server drains the socket for at most
# this long before closing: closing with unread data sends a TCP reset, which can destroy the
# error reply before the peer reads it (the "lingering close" of HTTP servers).
LINGER_S = 1.0


def _reply_error(sock: socket.socket, code: str, message: str, send=send_frame) -> None:
    """Tell the peer why (through its secure channel's `send`, if it has one), then close our
    side; the caller closes the socket."""
    try:
        send(sock, {"type": "error", "code": code, "message": message})
        sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + LINGER_S
        sink = bytearray(64 * 1024)
        while (remaining := deadline - time.monotonic()) > 0:
            sock.settimeout(remaining)
            if sock.recv_into(sink) == 0:
                break
    except OSError:
        pass  # the peer is gone or too slow; nothing more to tell it


class FrameServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    role = "frame server"

    def __init__(self, host: str, port: int, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
                 idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
                 max_connections: int = DEFAULT_MAX_CONNECTIONS, token: bytes | None = None,
                 header_timeout_s: float = HEADER_TIMEOUT_S, min_rate_bps: float = MIN_RATE_BPS,
                 rate_window_s: float = RATE_WINDOW_S):
        self.token = token
        self.rate_window_s = rate_window_s
        # The listen backlog: connections the kernel queues before accept(); socketserver's
        # default of 5 would drop the SYNs of a burst of edges far below the connection cap.
        self.request_queue_size = max(5, max_connections)
        self._receiving: dict[socket.socket, float] = {}  # connections reading a request: since when
        self.load: LoadMeter | None = None  # set by servers that know their load; sent in replies
        self.header_timeout_s, self.min_rate_bps = header_timeout_s, min_rate_bps
        self.max_frame_bytes = max_frame_bytes
        self.idle_timeout_s = idle_timeout_s
        self.max_connections = max_connections
        self._open: set[socket.socket] = set()  # connections being served
        self._stopping = False
        self._count_lock = threading.Condition()
        self._thread: threading.Thread | None = None
        self.handlers: dict[str, Handler] = {}
        self.validators: dict[str, Callable[[dict], None]] = {}
        super().__init__((host, port), _ConnectionHandler)

    @property
    def address(self) -> tuple[str, int]:
        return cast(tuple[str, int], self.server_address[:2])  # TCP: (host, port[, flow, scope])

    def admit(self, sock: socket.socket) -> bool:
        with self._count_lock:
            if self._stopping or len(self._open) >= self.max_connections:
                return False
            self._open.add(sock)
            return True

    def release(self, sock: socket.socket) -> None:
        with self._count_lock:
            self._open.discard(sock)
            self._count_lock.notify_all()

    def validate(self, header: dict) -> None:
        """Runs before a request's tensor bytes are read: refuse what we would not serve."""
        kind = header.get("type")
        if not isinstance(kind, str) or kind not in self.handlers:  # a list or object is not hashable
            raise RequestError("bad_request", f"unknown request type {kind!r:.40}; this {self.role} "
                                              f"serves: {', '.join(self.handlers)}")
        check = self.validators.get(kind)
        if check is not None:
            check(header)

    def _recv(self, sock: socket.socket, channel: auth.SecureChannel | None, validate,
              idle_timeout_s: float | None, max_frame_bytes: int | None = None,
              buffer: ReceiveBuffer | None = None):
        receive = channel.recv if channel else (lambda s, **kw: recv_frame(s, **kw))
        with self._count_lock:
            self._receiving[sock] = time.monotonic()
        try:
            return receive(sock, max_frame_bytes=max_frame_bytes or self.max_frame_bytes, validate=validate,
                           idle_timeout_s=idle_timeout_s, header_timeout_s=self.header_timeout_s,
                           min_rate_bps=self.min_rate_bps, buffer=buffer, rate_window_s=self.rate_window_s)
        finally:
            with self._count_lock:
                self._receiving.pop(sock, None)

    def _handshake(self, sock: socket.socket) -> auth.SecureChannel | None:
        """The token handshake (net/auth.py); raises RequestError when the peer fails it.
        Nothing but hello and auth, without tensors, is read before it succeeds, and only the
        hello's PRE_AUTH_FIELDS are looked at: the rest of it (a model to check, which may have
        to be built) only once the peer has proved the token. Returns None when that check
        refused the peer (the refusal has been sent)."""
        assert self.token is not None  # serve_connection handshakes only when there is a token

        def expect(kind: str):
            def check(header: dict) -> None:
                if header.get("type") != kind or header["tensors"]:
                    raise RequestError("auth_required", f"this {self.role} requires a token: "
                                                        f"expected {kind!r} first (--token / {auth.TOKEN_ENV})")
            return check

        hello, _ = self._recv(sock, None, expect("hello"), self.header_timeout_s, HANDSHAKE_MAX_BYTES)
        self.validate({k: v for k, v in hello.items() if k in PRE_AUTH_FIELDS})  # the protocol version
        client_nonce = hello.get("client_nonce")
        if not auth.valid_nonce(client_nonce):
            raise RequestError("auth_required", f"this {self.role} requires a token "
                                                f"(--token or {auth.TOKEN_ENV} on the edge)")
        server_nonce = auth.new_nonce()
        reply, _ = self.handlers["hello"](hello, {})
        if self.load is not None:
            reply["load"] = round(self.load.factor(), 3)
        send_frame(sock, {**reply, "server_nonce": server_nonce,
                          "server_proof": auth.proof(self.token, "cloud", client_nonce, server_nonce)})
        answer, _ = self._recv(sock, None, expect("auth"), self.header_timeout_s, HANDSHAKE_MAX_BYTES)
        if not auth.proofs_match(auth.proof(self.token, "edge", client_nonce, server_nonce),
                                 answer.get("client_proof")):
            raise RequestError("auth_failed", "wrong token")
        channel = auth.SecureChannel(self.token, client_nonce, server_nonce, is_client=False)
        try:
            self.validate(hello)  # the model and weights the edge named, for a proven peer only
        except RequestError as e:
            _reply_error(sock, e.code, e.message, channel.send)
            return None
        channel.send(sock, {"type": "auth_ok"})
        return channel

    def _wait_for_request(self, sock: socket.socket) -> bool:
        """Wait for the first byte of the next request: True when it is there, False when the
        server is stopping first; ProtocolError idle_timeout after idle_timeout_s. Polls, so a
        stopping server closes idle connections at once and still serves a request whose bytes
        have arrived."""
        deadline = time.monotonic() + self.idle_timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ProtocolError("idle_timeout", f"no request within {self.idle_timeout_s:g} s")
            readable, _, _ = select.select([sock], [], [], min(STOP_POLL_S, remaining))
            if readable:
                return True
            if self._stopping:
                return False

    def serve_connection(self, sock: socket.socket) -> None:
        try:
            host, port = sock.getpeername()[:2]
            peer = f"{host}:{port}"
        except OSError:  # reset before we looked (a balancer's health check does that)
            return
        channel = None
        try:
            if self.token is not None:
                channel = self._handshake(sock)
                if channel is None:
                    return
        except ProtocolError as e:  # RequestError included: refused before any tensor
            log.info("%s: handshake: %s", peer, peer_text(str(e)))
            _reply_error(sock, e.code, e.message)
            return
        except OSError as e:
            log.info("%s: connection lost in the handshake: %s", peer, e)
            return
        except Exception as e:  # one line, not a traceback: whatever a peer sent, it is its error
            log.warning("%s: handshake failed: %s: %s", peer, type(e).__name__, peer_text(str(e)))
            _reply_error(sock, "bad_request", f"handshake failed ({type(e).__name__})")
            return
        send = channel.send if channel else send_frame
        buffer = ReceiveBuffer()  # a request's tensors live here until its reply is sent
        while True:
            try:
                if not self._wait_for_request(sock):
                    return  # stopping, and this connection has nothing in flight
                header, tensors = self._recv(sock, channel, self.validate, self.header_timeout_s,
                                             buffer=buffer)
            except ConnectionClosed:
                return
            except ProtocolError as e:  # the stream is off a frame boundary: tell the peer, close
                log.info("%s: %s", peer, peer_text(str(e)))
                _reply_error(sock, e.code, e.message, send)
                return
            except OSError as e:
                log.info("%s: connection lost: %s", peer, e)
                return
            except Exception as e:  # a validator failed (e.g. a model that cannot be built)
                log.exception("%s: request refused", peer)
                _reply_error(sock, "internal", f"{type(e).__name__}: {e}", send)
                return
            try:
                reply, reply_tensors = self.handlers[header["type"]](header, tensors)
            except RequestError as e:
                if e.close:
                    log.info("%s: %s", peer, peer_text(str(e)))
                    _reply_error(sock, e.code, e.message, send)
                    return
                reply, reply_tensors = {"type": "error", "code": e.code, "message": e.message}, None
            except Exception as e:  # a bug or a failing model must not take the server down
                log.exception("%s: request failed", peer)
                reply, reply_tensors = {"type": "error", "code": "internal", "message": str(e)}, None
            if "id" in header:
                reply["id"] = header["id"]
            if self.load is not None:
                reply["load"] = round(self.load.factor(), 3)
            try:
                send(sock, reply, reply_tensors)
            except OSError as e:
                log.info("%s: connection lost while replying: %s", peer, e)
                return
            if self._stopping:
                return

    def start(self) -> Self:
        """Serve in a background thread; returns self (for `with Server(...).start() as s:`)."""
        self._thread = threading.Thread(target=self.serve_forever, name=self.role, daemon=True)
        self._thread.start()
        return self

    def stop(self, grace_s: float = 30.0) -> None:
        """Stop accepting; idle connections close; a connection still receiving a request after
        STOP_RECEIVE_GRACE_S is cut; requests received get up to grace_s to finish."""
        self._stopping = True  # idle connections notice within STOP_POLL_S and close
        if self._thread is not None:  # shutdown() waits for a serve_forever loop to end
            self.shutdown()
        self.server_close()
        deadline = time.monotonic() + grace_s
        with self._count_lock:
            while self._open and (remaining := deadline - time.monotonic()) > 0:
                now = time.monotonic()
                for sock, since in list(self._receiving.items()):
                    if now - since > STOP_RECEIVE_GRACE_S:  # still uploading: cut it, do not wait
                        try:
                            sock.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass
                self._count_lock.wait(timeout=min(STOP_POLL_S, remaining))
        if self._thread is not None:
            self._thread.join()

    def __exit__(self, *exc) -> None:
        self.stop()


# --- bandwidth probes: answered by the cloud on its main port and by the monitor server --------

def _validate_probe(header: dict) -> None:
    entries = header["tensors"]  # a list: recv_frame checks it before it validates
    if (len(entries) != 1 or entries[0]["name"] != "data" or entries[0]["dtype"] != "uint8"
            or len(entries[0]["shape"]) != 1):
        raise RequestError("bad_request", "a probe carries one 1-D uint8 tensor named 'data'")


def _handle_probe(header: dict, tensors: dict[str, torch.Tensor]) -> Reply:
    return {"type": "probe_ok", "bytes": tensors["data"].numel()}, None


def serve_probes(server: FrameServer) -> None:
    server.handlers["probe"] = _handle_probe
    server.validators["probe"] = _validate_probe

"""A threaded TCP server of frames: one thread per connection, many requests per connection.

Subclasses map message types to handlers. A handler gets (header, tensors) of one request and
returns (reply header, reply tensors). The server keeps no per-connection state beyond the
socket, so any process behind a load balancer can answer any request.
"""
from __future__ import annotations

import logging
import socket
import socketserver
import threading
from typing import Callable

import torch

from net.protocol import DEFAULT_MAX_FRAME_BYTES, ConnectionClosed, ProtocolError, recv_frame, send_frame

log = logging.getLogger("neurosurgeon.server")

Reply = tuple[dict, dict[str, torch.Tensor] | None]
Handler = Callable[[dict, dict[str, torch.Tensor]], Reply]

# A connection that sends nothing for this long between requests is closed; an edge reconnects.
DEFAULT_IDLE_TIMEOUT_S = 300.0
DEFAULT_MAX_CONNECTIONS = 64


class RequestError(ProtocolError):
    """A well-formed frame with a request the server refuses (unknown model, wrong shape, ...)."""


class _ConnectionHandler(socketserver.BaseRequestHandler):
    server: "FrameServer"

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not self.server.admit():
            _reply_error(sock, "busy", f"server is at its limit of {self.server.max_connections} connections")
            return
        try:
            self.server.serve_connection(sock)
        finally:
            self.server.release()


def _reply_error(sock: socket.socket, code: str, message: str) -> None:
    try:
        send_frame(sock, {"type": "error", "code": code, "message": message})
    except OSError:
        pass  # the peer is gone; nothing to tell it


class FrameServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    role = "frame server"

    def __init__(self, host: str, port: int, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
                 idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
                 max_connections: int = DEFAULT_MAX_CONNECTIONS):
        self.max_frame_bytes = max_frame_bytes
        self.idle_timeout_s = idle_timeout_s
        self.max_connections = max_connections
        self._connections = 0
        self._count_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.handlers: dict[str, Handler] = {}
        self.validators: dict[str, Callable[[dict], None]] = {}
        super().__init__((host, port), _ConnectionHandler)

    @property
    def address(self) -> tuple[str, int]:
        return self.server_address[:2]

    def admit(self) -> bool:
        with self._count_lock:
            if self._connections >= self.max_connections:
                return False
            self._connections += 1
            return True

    def release(self) -> None:
        with self._count_lock:
            self._connections -= 1

    def validate(self, header: dict) -> None:
        """Runs before a request's tensor bytes are read: refuse what we would not serve."""
        kind = header.get("type")
        if kind not in self.handlers:
            raise RequestError("bad_request", f"unknown request type {kind!r:.40}; this {self.role} "
                                              f"serves: {', '.join(self.handlers)}")
        check = self.validators.get(kind)
        if check is not None:
            check(header)

    def serve_connection(self, sock: socket.socket) -> None:
        peer = "%s:%s" % sock.getpeername()[:2]
        while True:
            try:
                header, tensors = recv_frame(sock, self.max_frame_bytes, self.validate, self.idle_timeout_s)
            except ConnectionClosed:
                return
            except ProtocolError as e:  # the stream is off a frame boundary: tell the peer, close
                log.info("%s: %s", peer, e)
                _reply_error(sock, e.code, e.message)
                return
            except OSError as e:
                log.info("%s: connection lost: %s", peer, e)
                return
            try:
                reply, reply_tensors = self.handlers[header["type"]](header, tensors)
            except RequestError as e:
                reply, reply_tensors = {"type": "error", "code": e.code, "message": e.message}, None
            except Exception as e:  # a bug or a failing model must not take the server down
                log.exception("%s: request failed", peer)
                reply, reply_tensors = {"type": "error", "code": "internal", "message": str(e)}, None
            if "id" in header:
                reply["id"] = header["id"]
            try:
                send_frame(sock, reply, reply_tensors)
            except OSError as e:
                log.info("%s: connection lost while replying: %s", peer, e)
                return

    def start(self) -> "FrameServer":
        """Serve in a background thread; returns self (for `with Server(...).start() as s:`)."""
        self._thread = threading.Thread(target=self.serve_forever, name=self.role, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:  # shutdown() waits for a serve_forever loop to end
            self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join()

    def __exit__(self, *exc) -> None:
        self.stop()


# --- bandwidth probes: answered by the cloud on its main port and by the monitor server --------

def _validate_probe(header: dict) -> None:
    entries = header.get("tensors")
    if (len(entries) != 1 or entries[0]["name"] != "data" or entries[0]["dtype"] != "uint8"
            or len(entries[0]["shape"]) != 1):
        raise RequestError("bad_request", "a probe carries one 1-D uint8 tensor named 'data'")


def _handle_probe(header: dict, tensors: dict[str, torch.Tensor]) -> Reply:
    return {"type": "probe_ok", "bytes": tensors["data"].numel()}, None


def serve_probes(server: FrameServer) -> None:
    server.handlers["probe"] = _handle_probe
    server.validators["probe"] = _validate_probe

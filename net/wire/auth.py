"""Authentication with a shared token: an HMAC challenge-response, then a MAC on every frame.

Handshake (the token itself never travels):
  edge  -> hello {version, client_nonce}
  cloud -> hello {version, server_nonce, server_proof = HMAC(token, "cloud" | cn | sn)}
  edge  -> auth  {client_proof = HMAC(token, "edge" | cn | sn)}       (after checking server_proof)
  cloud -> auth_ok                                                     (or error auth_failed, close)
Then both sides hold key = HMAC(token, "session" | cn | sn), and every frame in each direction
carries header["mac"] = HMAC(key, direction | sequence number | canonical header | tensor bytes):
a changed, dropped, replayed or reordered frame is detected and the connection closed. Frames
are authenticated, not encrypted: anyone on the path can read the tensors (see README).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from typing import TypeGuard

import torch

from net.wire.protocol import ProtocolError, recv_frame, send_frame

TOKEN_ENV = "NEUROSURGEON_TOKEN"
NONCE_BYTES = 16


def token_from(arg: str | None) -> bytes | None:
    """The token from --token, else the NEUROSURGEON_TOKEN environment variable, else None."""
    token = arg if arg is not None else os.environ.get(TOKEN_ENV)
    return token.encode("utf-8") if token else None


def new_nonce() -> str:
    return secrets.token_hex(NONCE_BYTES)


def proof(token: bytes, role: str, client_nonce: str, server_nonce: str) -> str:
    return hmac.new(token, f"{role}|{client_nonce}|{server_nonce}".encode(), hashlib.sha256).hexdigest()


def proofs_match(expected: str, got) -> bool:
    return isinstance(got, str) and hmac.compare_digest(expected, got)


def valid_nonce(value) -> TypeGuard[str]:
    return isinstance(value, str) and len(value) == 2 * NONCE_BYTES and all(c in "0123456789abcdef" for c in value)


class SecureChannel:
    """send/recv of frames with a MAC, for one connection after the handshake."""

    def __init__(self, token: bytes, client_nonce: str, server_nonce: str, is_client: bool):
        self._key = bytes.fromhex(proof(token, "session", client_nonce, server_nonce))
        self._out_dir, self._in_dir = ("edge", "cloud") if is_client else ("cloud", "edge")
        self._sent = self._received = 0

    def _mac(self, direction: str, seq: int, header: dict, tensors: dict[str, torch.Tensor]) -> str:
        mac = hmac.new(self._key, f"{direction}|{seq}|".encode(), hashlib.sha256)
        mac.update(json.dumps(header, sort_keys=True, separators=(",", ":")).encode())
        for name, tensor in tensors.items():
            mac.update(f"{name}|{tensor.dtype}|{list(tensor.shape)}|".encode())
            mac.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())  # type: ignore[arg-type]  # numpy's stubs: a buffer only on 3.12+
        return mac.hexdigest()

    def send(self, sock, header: dict, tensors: dict[str, torch.Tensor] | None = None, pacer=None) -> int:
        tensors = tensors or {}
        signed = {k: v for k, v in header.items() if k not in ("mac", "tensors")}
        mac = self._mac(self._out_dir, self._sent, signed, tensors)
        self._sent += 1
        return send_frame(sock, {**signed, "mac": mac}, tensors, pacer)

    def recv(self, sock, **kwargs) -> tuple[dict, dict[str, torch.Tensor]]:
        header, tensors = recv_frame(sock, **kwargs)
        signed = {k: v for k, v in header.items() if k not in ("mac", "tensors")}
        expected = self._mac(self._in_dir, self._received, signed, tensors)
        if not proofs_match(expected, header.get("mac")):
            raise ProtocolError("bad_mac", "frame failed its authentication check (tampered, "
                                           "replayed, or signed with another token)")
        self._received += 1
        return signed | {"tensors": header.get("tensors", [])}, tensors

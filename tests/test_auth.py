"""The shared-token handshake and per-frame MACs, against a real server on loopback."""
import socket

import pytest
import torch

from net.cloud.server import CloudServer
from net.edge.client import CloudClient, CloudRefused
from net.wire import auth
from net.wire.protocol import recv_frame, send_frame

TOKEN = b"correct horse battery staple"


@pytest.fixture(scope="module")
def secure_cloud():
    server = CloudServer("127.0.0.1", 0, token=TOKEN).start()
    yield server
    server.stop()


def test_right_token_is_served(secure_cloud, chain_models, image_batch):
    model = chain_models["le_net"]
    with torch.no_grad():
        expected = model(image_batch.clone())
    with CloudClient(*secure_cloud.address, token=TOKEN) as client:
        for _ in range(3):  # sequence numbers advance in step on both sides
            reply = client.infer("le_net", model.fingerprint, 0, image_batch, want_logits=True)
            assert torch.equal(reply.logits, expected)


@pytest.mark.parametrize("token, code", [(None, "auth_required"), (b"wrong token", "auth_failed")])
def test_missing_or_wrong_token_is_refused(secure_cloud, token, code):
    with pytest.raises(CloudRefused) as e:
        CloudClient(*secure_cloud.address, token=token).connect()
    assert e.value.code == code


def test_no_tensor_is_accepted_before_the_handshake(secure_cloud, chain_models):
    """An infer sent as the first frame is refused from its header: its body is never read."""
    fingerprint = chain_models["le_net"].fingerprint
    for cut, x, code in [(12, torch.zeros(1, 84), "auth_required"),  # small: refused by its header
                         (0, torch.zeros(1, 3, 224, 224), "frame_too_large")]:  # big: by its length
        with socket.create_connection(secure_cloud.address, timeout=10) as sock:
            send_frame(sock, {"type": "infer", "model": "le_net", "cut": cut, "fingerprint": fingerprint}, {"x": x})
            reply, _ = recv_frame(sock, idle_timeout_s=10)
        assert reply["code"] == code


def test_token_never_travels_in_clear(secure_cloud):
    """Record every byte the edge sends in a whole session; the token is not among them."""
    sent = bytearray()

    class Recorder(socket.socket):
        def sendall(self, data, *args):
            sent.extend(bytes(data))
            return super().sendall(data, *args)

    original = socket.create_connection

    def recording_connection(address, timeout=None):
        sock = Recorder(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(address)
        return sock

    socket.create_connection = recording_connection
    try:
        with CloudClient(*secure_cloud.address, token=TOKEN) as client:
            client.probe(1000)
    finally:
        socket.create_connection = original
    assert len(sent) > 1000 and TOKEN not in sent and TOKEN.hex().encode() not in sent


def test_tampered_frame_is_detected():
    key_a, key_b = auth.SecureChannel(TOKEN, "a" * 32, "b" * 32, True), auth.SecureChannel(TOKEN, "a" * 32, "b" * 32, False)
    left, right = socket.socketpair()
    with left, right:
        key_a.send(left, {"type": "probe"}, {"data": torch.arange(10, dtype=torch.uint8)})
        header, tensors = key_b.recv(right)
        assert tensors["data"].tolist() == list(range(10))
        # the same frame again (a replay) fails: the sequence number moved on
        key_a2 = auth.SecureChannel(TOKEN, "a" * 32, "b" * 32, True)
        key_a2.send(left, {"type": "probe"}, {"data": torch.arange(10, dtype=torch.uint8)})
        with pytest.raises(auth.ProtocolError, match="authentication"):
            key_b.recv(right)


def test_flipped_tensor_byte_is_detected():
    sender = auth.SecureChannel(TOKEN, "c" * 32, "d" * 32, True)
    receiver = auth.SecureChannel(TOKEN, "c" * 32, "d" * 32, False)
    left, right = socket.socketpair()
    with left, right:
        class Flipper:  # a man in the middle that changes the last byte of the payload
            def sendall(self, data):
                data = bytearray(bytes(data))
                if len(data) == 10:
                    data[-1] ^= 1
                left.sendall(data)
        sender.send(Flipper(), {"type": "probe"}, {"data": torch.arange(10, dtype=torch.uint8)})
        with pytest.raises(auth.ProtocolError, match="authentication"):
            receiver.recv(right)


def test_token_from_the_environment(monkeypatch):
    monkeypatch.setenv(auth.TOKEN_ENV, "from-env")
    assert auth.token_from(None) == b"from-env"
    assert auth.token_from("flag") == b"flag"
    monkeypatch.delenv(auth.TOKEN_ENV)
    assert auth.token_from(None) is None


def test_cloud_warns_when_exposed_without_a_token(capsys, monkeypatch):
    from net.apps import cloud as cloud_main
    monkeypatch.delenv(auth.TOKEN_ENV, raising=False)
    monkeypatch.setattr(cloud_main, "serve_until_signal", lambda servers: [s.stop() for s in servers])
    cloud_main.main(["-i", "0.0.0.0", "-p", "0"])
    assert "without a token" in capsys.readouterr().err
    cloud_main.main(["-p", "0"])  # the default, loopback: no warning
    assert "without a token" not in capsys.readouterr().err

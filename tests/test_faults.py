"""Faults: a cloud that dies mid-request or goes away, an edge that dies mid-upload, SIGTERM
with a request in flight, and many edges at once."""
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import torch

from net.cloud.server import CloudServer
from net.edge.client import CloudClient
from net.edge.runner import collaborative_inference
from net.wire.protocol import PROTOCOL_VERSION, ProtocolError, recv_frame
from predictor import LatencyPredictor, Link
from predictor.planner import ChainPlanner
from utils.classes import top_k
from utils.provenance import REPO_ROOT


def planner_for(model):
    return ChainPlanner(model, LatencyPredictor.load("edge"), LatencyPredictor.load("cloud"))


def test_cloud_dying_mid_request_then_coming_back(chain_models, image_batch):
    """A 'cloud' that reads the request and dies without answering; the edge finishes locally;
    the next request reconnects to the real cloud started on the same port."""
    model = chain_models["alex_net"]
    with torch.no_grad():
        expected = top_k(model(image_batch.clone()))
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def dying_cloud():
        conn, _ = listener.accept()
        recv_frame(conn)                                                # hello
        from net.wire.protocol import send_frame
        send_frame(conn, {"type": "hello", "version": PROTOCOL_VERSION, "models": []})
        conn.recv(1000)                                                 # part of the request...
        conn.close()                                                    # ...and it dies
        listener.close()

    thread = threading.Thread(target=dying_cloud)
    thread.start()
    client = CloudClient("127.0.0.1", port)
    report = collaborative_inference(model, planner_for(model), image_batch, client, Link(100.0),
                                     partition=model.prefix(5))
    thread.join(10)
    assert report.fallback and report.cut_point == 5 and report.top5 == expected
    with CloudServer("127.0.0.1", port).start():  # the cloud is back
        again = collaborative_inference(model, planner_for(model), image_batch, client, Link(100.0),
                                        partition=model.prefix(5))
    client.close()
    assert not again.fallback and again.transfer_bytes > 0 and again.top5 == expected


def test_edge_dying_mid_upload_frees_the_connection(chain_models):
    with CloudServer("127.0.0.1", 0).start() as server:
        model = chain_models["le_net"]
        for _ in range(3):
            sock = socket.create_connection(server.address, timeout=5)
            from net.wire.protocol import send_frame
            # a frame that announces 602112 bytes of tensor and stops after the header
            header = {"type": "infer", "model": "le_net", "cut": 0, "fingerprint": model.fingerprint}
            data = bytearray()

            class Capture:
                def sendall(self, chunk, data=data):
                    data.extend(bytes(chunk))

            send_frame(Capture(), header, {"x": torch.zeros(1, 3, 224, 224)})
            sock.sendall(bytes(data[:5000]))
            sock.close()  # the edge dies mid-upload
        deadline = time.monotonic() + 5
        while server._open and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not server._open  # every dead edge's connection was freed
        with CloudClient(*server.address) as client:
            assert client.infer("le_net", model.fingerprint, 12, torch.zeros(1, 84)).top5


@pytest.mark.slow
def test_sigterm_finishes_the_request_in_flight_then_exits_0(image_batch):
    proc = subprocess.Popen([sys.executable, "cloud_api.py", "-p", "0", "--threads", "1", "--preload", "vgg_net"],
                            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = int(re.search(r":(\d+)", proc.stdout.readline()).group(1))
        from models import get_dnn_model
        model = get_dnn_model("vgg_net")
        fingerprint = model.fingerprint
        client = CloudClient("127.0.0.1", port)
        client.connect()
        result = {}
        thread = threading.Thread(target=lambda: result.update(
            reply=client.infer("vgg_net", fingerprint, 0, image_batch)))
        thread.start()
        time.sleep(0.15)  # the request is being computed (VGG16-BN at 1 thread: ~0.4 s)
        proc.send_signal(signal.SIGTERM)
        thread.join(60)
        assert "reply" in result and len(result["reply"].top5) == 5  # in flight: completed
        try:  # new connections: refused, or (before the listener closes) told the cloud is stopping
            with socket.create_connection(("127.0.0.1", port), timeout=2) as late:
                reply, _ = recv_frame(late, idle_timeout_s=5)
            assert reply["code"] == "busy" and "stopping" in reply["message"]
        except ProtocolError as e:
            assert e.code == "closed"  # closed without a word, not left hanging
        except OSError:
            pass  # connection refused: the listener is closed
        assert proc.wait(timeout=60) == 0
        client.close()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()


@pytest.mark.slow
def test_many_edges_many_requests_nothing_lost(chain_models):
    """The load case at test size (8 edges x 5 requests; 16 x 25 runs in the benchmarks)."""
    model = chain_models["alex_net"]
    cuts = [0, 3, 6, 13, 17]
    inputs = [torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(100 + i)) for i in range(8)]
    with torch.no_grad():
        expected = [model(x.clone()) for x in inputs]
    answered, wrong = [], []
    with CloudServer("127.0.0.1", 0).start() as server:
        def edge(i):
            with CloudClient(*server.address) as client:
                for k in cuts:
                    with torch.no_grad():
                        sent = model[:k](inputs[i].clone())
                    reply = client.infer("alex_net", model.fingerprint, k, sent, want_logits=True)
                    answered.append((i, k))
                    if not torch.equal(reply.logits, expected[i]):
                        wrong.append((i, k))

        threads = [threading.Thread(target=edge, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    assert sorted(answered) == sorted((i, k) for i in range(8) for k in cuts)
    assert not wrong

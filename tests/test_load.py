"""The cloud's load figure, and a cut that moves toward the edge under load and back after it."""
import threading
import time

import pytest
import torch

from net.cloud.server import CloudServer
from net.edge.client import CloudClient
from net.edge.runner import collaborative_inference
from net.server import load as load_module
from net.server.load import LoadMeter
from predictor import LatencyPredictor, Link
from predictor.planner import ChainPlanner


def test_load_meter_rises_with_slow_requests_and_decays_when_idle(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(load_module.time, "monotonic", lambda: clock[0])
    meter = LoadMeter()
    meter.record(("m", 0), 10.0)  # the unloaded time
    assert meter.factor() == 1.0
    for _ in range(10):
        meter.record(("m", 0), 40.0)  # 4x slower now
    assert meter.factor() == pytest.approx(4.0, rel=0.1)
    meter.record(("other", 3), 5.0)  # a new (model, cut) starts as its own baseline
    assert meter.factor() > 2.0
    clock[0] += 10 * load_module.HALF_LIFE_S  # idle: back to ~1
    assert meter.factor() == pytest.approx(1.0, abs=0.01)


def least_slowdown_that_sends_everything(planner_for_slowdown, link: Link) -> tuple[float, ChainPlanner]:
    """The least edge slowdown (steps of 0.1) at which the shipped predictions send LeNet's input
    (k = 0) to the cloud over `link`: near that border a busier cloud moves work to the edge."""
    for tenths in range(10, 101):
        planner = planner_for_slowdown(tenths / 10)
        if planner.best_cut_point(link) == 0:
            return tenths / 10, planner
    raise AssertionError(f"no edge slowdown up to 10x sends LeNet's input to the cloud over {link}")


@pytest.mark.slow
def test_a_busy_cloud_moves_the_cut_home_and_back(monkeypatch, chain_models, image_batch):
    monkeypatch.setattr(load_module, "HALF_LIFE_S", 0.3)
    edge_model, busy_model = chain_models["le_net"], chain_models["alex_net"]
    # LeNet at 1000 Mbit/s on an edge just slow enough that the cloud should do everything up to
    # a load of 1.4 (an idle cloud reads about 1): a cloud twice as slow moves work to the edge
    # (checked on the predictions)
    edge_predictor, cloud_predictor = LatencyPredictor.load("edge"), LatencyPredictor.load("cloud")
    slowdown, planner = least_slowdown_that_sends_everything(
        lambda f: ChainPlanner(edge_model, edge_predictor, cloud_predictor, edge_slowdown=f), Link(1000.0, 0.0, 1.4))
    assert planner.best_cut_point(Link(1000.0, 0.0, 1.0)) == 0 and planner.best_cut_point(Link(1000.0, 0.0, 2.0)) > 0
    with CloudServer("127.0.0.1", 0).start() as server:
        edge = CloudClient(*server.address)
        busy_input = torch.randn(1, 3, 224, 224)
        with CloudClient(*server.address) as warm:  # unloaded times of the busy requests
            for _ in range(3):
                warm.infer("alex_net", busy_model.fingerprint, 0, busy_input)
        idle = collaborative_inference(edge_model, planner, image_batch, edge, Link(1000.0), edge_slowdown=slowdown)
        assert idle.cut_point == 0 and idle.cloud_load < 1.4

        stop = threading.Event()

        def hammer():
            with CloudClient(*server.address) as client:
                while not stop.is_set():
                    client.infer("alex_net", busy_model.fingerprint, 0, busy_input)

        workers = [threading.Thread(target=hammer) for _ in range(6)]
        for w in workers:
            w.start()
        try:
            time.sleep(1.5)
            edge.stats()  # any reply brings the current load
            assert edge.cloud_load > 2.0
            loaded = collaborative_inference(edge_model, planner, image_batch, edge, Link(1000.0), edge_slowdown=slowdown)
            # the cut the load it read calls for, with work on the edge
            assert loaded.cloud_load > 2.0 and loaded.cut_point > 0
            assert loaded.cut_point == planner.best_cut_point(Link(1000.0, 0.0, loaded.cloud_load))
        finally:
            stop.set()
            for w in workers:
                w.join(60)
        time.sleep(2.0)  # idle: the load decays
        edge.stats()
        back = collaborative_inference(edge_model, planner, image_batch, edge, Link(1000.0), edge_slowdown=slowdown)
        edge.close()
        assert back.cut_point == 0 and back.cloud_load < 1.4


def test_a_dag_models_partition_follows_the_clouds_load(cloud_server, image_batch):
    from models.dag import get_dag_model
    from predictor.planner import DagPlanner
    model = get_dag_model("res_net")
    planner = DagPlanner(model, LatencyPredictor.load("edge"), LatencyPredictor.load("cloud"), edge_slowdown=2.0)
    idle = planner.best(Link(1000.0, 0.0, cloud_load=1.0))
    loaded = planner.best(Link(1000.0, 0.0, cloud_load=50.0))
    assert idle.edge_nodes == {model.input_name} and loaded.edge_nodes == set(model.nodes)
    with CloudClient(*cloud_server.address) as client:
        client.cloud_load = 50.0  # as if the cloud's last reply had said so
        report = collaborative_inference(model, planner, image_batch, client, Link(1000.0))
    assert report.cloud_load == 50.0 and report.cut_point == len(model.nodes) - 1

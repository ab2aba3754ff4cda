"""DAG models traced by torch.fx: split execution is exact, the min-cut plan is runnable."""
import pytest
import torch

from models.dag import DAG_MODEL_NAMES, get_dag_model
from predictor import LatencyPredictor, Link
from predictor.planner import DagPlanner
from predictor.planner.dag_cut import is_valid


@pytest.fixture(scope="module")
def dag_models():
    return {name: get_dag_model(name) for name in DAG_MODEL_NAMES}


def cloud_side(model, sent, partition):
    """The model's output from what the edge side of `partition` sent, as the runner gets it:
    the cloud side run on the crossing tensors, or the edge's output when it ran everything."""
    return sent[model.output_key] if partition.all_edge else model.run_cloud(sent, partition)


@pytest.fixture(scope="module")
def x():
    return torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(3))


@pytest.mark.slow
def test_traced_graph_equals_the_module(dag_models, x):
    for model in dag_models.values():
        with torch.no_grad():
            assert torch.equal(model.graph_module(x.clone()), model.module(x.clone()))


@pytest.mark.slow
@pytest.mark.parametrize("name", DAG_MODEL_NAMES)
def test_every_prefix_cut_is_exact_and_some_send_several_tensors(dag_models, x, name):
    model = dag_models[name]
    with torch.no_grad():
        whole = model.module(x.clone())
    names = list(model.nodes)
    widest = 0
    for k in range(1, len(names) + 1):  # every prefix of the traced order is a valid partition
        partition = model.partition(names[:k])
        sent = model.run_edge(x.clone(), partition)
        widest = max(widest, len(sent))
        assert torch.equal(cloud_side(model, sent, partition), whole), f"{name}: cut after {names[k - 1]}"
    # inside a residual block (ResNet: the skip and the branch) or an inception block (GoogLeNet:
    # its four branches) several tensors cross
    assert widest >= (2 if name == "res_net" else 4)


def test_a_set_of_tensors_that_does_not_cut_the_input_off_is_refused(dag_models, x):
    model = dag_models["res_net"]
    sent = model.run_edge(x.clone(), model.partition({"x", "conv1", "bn1", "relu", "maxpool", "layer1_0_conv1"}))
    sent.pop("maxpool")  # the skip connection's tensor is missing
    with pytest.raises(ValueError, match="input"):
        model.run_cloud(sent)


@pytest.mark.parametrize("name", DAG_MODEL_NAMES)
@pytest.mark.parametrize("bandwidth_mbps", [0.001, 1.1, 18.88, 1e6])
def test_min_cut_plan_is_valid_and_runs_exactly(dag_models, x, name, bandwidth_mbps):
    model = dag_models[name]
    planner = DagPlanner(model, LatencyPredictor.load("edge"), LatencyPredictor.load("cloud"), edge_slowdown=5.0)
    plan = planner.best(Link(bandwidth_mbps))
    assert is_valid(planner.edges, plan.edge_nodes, model.input_name)
    if bandwidth_mbps == 0.001:
        assert plan.edge_nodes == set(model.nodes)  # no link: everything stays on the edge
    if bandwidth_mbps == 1e6:
        assert plan.edge_nodes == {model.input_name}  # a free link to a 5x faster cloud
    with torch.no_grad():
        whole = model.module(x.clone())
    assert torch.equal(cloud_side(model, model.run_edge(x.clone(), plan.partition), plan.partition), whole)


def test_fingerprints_are_deterministic():
    assert get_dag_model("res_net").fingerprint == get_dag_model("res_net").fingerprint


@pytest.mark.parametrize("name", DAG_MODEL_NAMES)
def test_split_inference_through_sockets_equals_local(cloud_server, dag_models, x, name):
    """Several partitions, multi-tensor ones among them, through a real cloud server."""
    from net.edge.client import CloudClient
    from net.edge.runner import collaborative_inference
    model = dag_models[name]
    planner = DagPlanner(model, LatencyPredictor.load("edge"), LatencyPredictor.load("cloud"))
    with torch.no_grad():
        whole = model.module(x.clone())
    names = list(model.nodes)
    widths = {k: len(model.crossing(names[:k])) for k in range(1, len(names))}
    cuts = [1, max(widths, key=widths.get), len(names) // 2, len(names) - 2]  # the input, widest, middle, late
    with CloudClient(*cloud_server.address) as client:
        for k in cuts:
            report = collaborative_inference(model, planner, x, client, Link(100.0),
                                             partition=model.partition(names[:k]), want_logits=True)
            assert not report.fallback and torch.equal(report.logits, whole), f"{name}, first {k} nodes"
            assert report.crossing == model.crossing(names[:k]) and report.transfer_bytes > 0
        chosen = collaborative_inference(model, planner, x, client, Link(18.88), want_logits=True)
        assert torch.equal(chosen.logits, whole)
    assert widths[cuts[1]] >= 2


def test_edge_api_runs_a_dag_model_through_a_real_cloud(capsys, cloud_server, china_jpg, dag_models):
    import json

    from net.apps.edge import main
    from utils.classes import top_k
    from utils.image import load_image
    host, port = cloud_server.address
    code = main(["-i", host, "-p", str(port), "-t", "res_net", "--bandwidth", "100", "--partition", "20",
                 "--image", str(china_jpg), "--json"])
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and report["cut_point"] == 20 and len(report["crossing"]) == 2
    with torch.no_grad():
        expected = top_k(dag_models["res_net"].module(load_image(china_jpg)))
    assert [c for c, _ in report["top5"]] == [c for c, _ in expected]

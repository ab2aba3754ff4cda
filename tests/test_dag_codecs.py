"""The DAG planner chooses the cut and the codec jointly (one minimum cut per tensor codec): proved
against brute force over (valid partition, codec), with fabricated codec tables; no sockets."""
import itertools
import random

import pytest
import torch
from torch import nn

from models.dag import DagModel, get_dag_model
from predictor import LatencyPredictor, Link
from predictor.energy import EdgePower
from predictor.planner import DagPlanner
from predictor.planner.codec_costs import CodecCosts, CodecTable, ImageInfo, allowed_codecs
from predictor.planner.dag_cut import DagCutSearch, DagNode, is_valid, objective_cost
from predictor.planner.values import LATENCY, Objective

ENERGY = Objective("energy", EdgePower("lte", compute_mw=900.0, idle_mw=20.0, send_mw=2500.0, wait_mw=300.0))
IMAGE = ImageInfo(640 * 427, {"pixels": 3 * 224 * 224, "file": 60_000, "jpeg90": 20_000})


class Tiny(nn.Module):
    """A small DAG: a branch joined by a concatenation, then a skip joined by an add."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=4, padding=1)
        self.a = nn.Conv2d(8, 4, 3, stride=2, padding=1)
        self.b = nn.Conv2d(8, 4, 1, stride=2)
        self.pool = nn.MaxPool2d(2)
        self.c = nn.Conv2d(8, 8, 3, padding=1)
        self.gap = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        s = torch.relu(self.stem(x))
        y = self.pool(torch.cat([self.a(s), self.b(s)], 1))
        y = self.c(y) + y
        return self.fc(torch.flatten(self.gap(y), 1))


def table(model: DagModel, zstd_ratio: dict[str, float], fixed_ms: float = 0.0, per_byte_ms: float = 0.0) -> CodecTable:
    """A codec table (one for both roles) whose zstd codes `model`'s nodes at the given ratios
    (1 elsewhere), fp16 and int8 at 1/2 and 1/4, each at these speeds."""
    speed = {c: {"encode_fixed_ms": fixed_ms, "encode_ms_per_byte": per_byte_ms,
                 "decode_fixed_ms": fixed_ms / 2, "decode_ms_per_byte": per_byte_ms / 2}
             for c in ("zstd", "fp16", "int8")}
    image = {"prep_fixed_ms": 0.0, "prep_ms_per_pixel": 1e-5, "normalise_ms": 0.4, "strip_ms": 0.02,
             "jpeg_decode_ms": 0.3, "jpeg75_encode_ms": 0.2, "jpeg90_encode_ms": 0.2, "jpeg95_encode_ms": 0.2}
    ratios = {"zstd": {n: zstd_ratio.get(n, 1.0) for n in model.nodes},
              "fp16": {n: 0.5 for n in model.nodes}, "int8": {n: 0.25 for n in model.nodes}}
    return CodecTable({"speed": speed, "image": image, "ratios": {model.name: ratios}})


def planner_for(model: DagModel, codec_table: CodecTable, allowed, image=None, budget=0.0, accuracy=None,
                edge_slowdown=5.0) -> DagPlanner:
    planner = DagPlanner(model, LatencyPredictor.load("edge"), LatencyPredictor.load("cloud"), edge_slowdown)
    planner.codecs = CodecCosts(model.name, codec_table, codec_table, edge_slowdown, accuracy=accuracy or {})
    planner.configure_codecs(allowed, image, budget)
    return planner


def with_random_costs(planner: DagPlanner, rng: random.Random) -> DagPlanner:
    """The planner with each node's predicted costs drawn at random (the real bytes kept), its
    graph rebuilt and codecs reconfigured: cuts of every shape become the best somewhere."""
    planner.nodes = {name: DagNode(name, 0.0 if name == planner.model.input_name else rng.uniform(0, 20),
                                   rng.uniform(0, 4), node.out_bytes) for name, node in planner.nodes.items()}
    planner.search = DagCutSearch(planner.nodes, planner.edges, planner.model.input_name)
    planner.configure_codecs(planner.codecs.allowed, planner.codecs.image, planner.codecs.budget)
    return planner


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return DagModel("tiny", Tiny())


@pytest.fixture(scope="module")
def res_net():
    return get_dag_model("res_net")


def valid_partitions(model: DagModel):
    others = [n for n in model.nodes if n != model.input_name]
    edges = model.edges()
    for r in range(len(others) + 1):
        for subset in itertools.combinations(others, r):
            edge_nodes = {model.input_name, *subset}
            if is_valid(edges, edge_nodes, model.input_name):
                yield model.partition(edge_nodes)


def brute_force_cost(planner: DagPlanner, link: Link, objective: Objective, tensor_codecs, input_codecs=()) -> float:
    """The least cost over every valid partition coded with every codec it may use."""
    model, weights = planner.model, objective.weights()
    costs = []
    for partition in valid_partitions(model):
        codecs = ["none"] if partition.all_edge else [*tensor_codecs, *(input_codecs if partition.cut_point == 0 else ())]
        costs += [objective_cost(planner.cost(partition, link, objective, c), link.rtt_ms, weights) for c in codecs]
    return min(costs)


def tiny_zstd(tiny: DagModel) -> dict[str, float]:
    # zstd halves the branch's and the skip's tensors, not the others
    return {"a": 0.5, "b": 0.5, "cat": 0.5, "pool": 0.5, "relu": 0.9}


@pytest.mark.parametrize("objective", [LATENCY, ENERGY], ids=["latency", "energy"])
@pytest.mark.parametrize("with_image", [False, True])
@pytest.mark.parametrize("bw, rtt, load", [(0.3, 0.0, 1.0), (2.0, 20.0, 1.0), (8.0, 5.0, 2.5), (40.0, 0.0, 1.0),
                                           (300.0, 10.0, 1.0), (5000.0, 0.0, 4.0)])
def test_joint_best_equals_brute_force_over_partitions_and_codecs(tiny, objective, with_image, bw, rtt, load):
    codec_table = table(tiny, tiny_zstd(tiny), fixed_ms=0.05, per_byte_ms=2e-6)
    image, inputs = (IMAGE, ("pixels", "file")) if with_image else (None, ())
    allowed = allowed_codecs("auto", has_image=with_image, image_codecs=("pixels", "file"))
    planner = planner_for(tiny, codec_table, allowed, image)
    link = Link(bw, rtt, load)
    best = planner.best(link, objective)
    assert is_valid(planner.edges, best.edge_nodes, tiny.input_name)
    # the plan is what cost() says of its partition and codec
    again = planner.cost(best.partition, link, objective, best.codec)
    assert again.total_ms == pytest.approx(best.total_ms) and again.coded_bytes == best.coded_bytes
    found = objective_cost(best, rtt, objective.weights())
    assert found == pytest.approx(brute_force_cost(planner, link, objective, ("none", "zstd"), inputs), rel=1e-9)


def test_joint_best_equals_brute_force_with_random_costs_and_ratios(tiny):
    """Random node costs, zstd ratios, fixed costs and links: every (partition, codec) the joint
    search may find is the brute-force best, and between them the seeds pick zstd for cuts that
    send several tensors."""
    several_zstd = 0
    for seed in range(30):
        rng = random.Random(seed)
        ratios = {n: rng.choice([0.2, 0.5, 0.8, 1.0, 1.1]) for n in tiny.nodes}
        codec_table = table(tiny, ratios, fixed_ms=rng.choice([0.0, 0.5, 3.0]), per_byte_ms=rng.choice([0.0, 2e-7]))
        with_image = rng.random() < 0.3
        image, inputs = (IMAGE, ("pixels", "file")) if with_image else (None, ())
        allowed = allowed_codecs("auto", has_image=with_image, image_codecs=("pixels", "file"))
        planner = with_random_costs(planner_for(tiny, codec_table, allowed, image, edge_slowdown=1.0), rng)
        link = Link(rng.choice([5.0, 20.0, 80.0, 300.0, 1000.0]), rng.choice([0.0, 2.0]), rng.choice([1.0, 2.0]))
        objective = rng.choice([LATENCY, ENERGY])
        best = planner.best(link, objective)
        found = objective_cost(best, link.rtt_ms, objective.weights())
        assert found == pytest.approx(brute_force_cost(planner, link, objective, ("none", "zstd"), inputs), rel=1e-9)
        several_zstd += best.codec == "zstd" and len(best.crossing) >= 2
    assert several_zstd >= 1


def with_costs(planner: DagPlanner, costs: dict[str, tuple[float, float]], default: tuple[float, float]) -> DagPlanner:
    """The planner with each node's (edge ms, cloud ms) as given (else `default`; the input's 0)."""
    given = {name: costs.get(name, (0.0, 0.0) if name == planner.model.input_name else default)
                for name in planner.nodes}
    planner.nodes = {name: DagNode(name, *given[name], node.out_bytes) for name, node in planner.nodes.items()}
    planner.search = DagCutSearch(planner.nodes, planner.edges, planner.model.input_name)
    planner.configure_codecs(planner.codecs.allowed, planner.codecs.image, planner.codecs.budget)
    return planner


def test_every_codecs_min_cut_costs_what_cost_says_with_per_tensor_fixed_costs(tiny):
    """Large fixed costs: a cut sending several tensors pays them once each, in the graph as in
    cost() (the search's self-check raises otherwise), and the cut is still the brute-force best."""
    for seed in range(20):
        rng = random.Random(seed)
        codec_table = table(tiny, {n: rng.choice([0.1, 0.3, 0.9]) for n in tiny.nodes}, fixed_ms=2.0, per_byte_ms=1e-6)
        planner = with_random_costs(planner_for(tiny, codec_table, ("zstd",), edge_slowdown=1.0), rng)
        link = Link(rng.choice([5.0, 20.0, 80.0, 1000.0]))
        assert planner.best(link).total_ms == pytest.approx(brute_force_cost(planner, link, LATENCY, ("zstd",)), rel=1e-9)
    # the branches a and b cheap on the edge and coded small, all after them dear on the edge: both cross
    ratios = {"x": 0.9, "stem": 0.9, "relu": 0.9, "a": 0.1, "b": 0.1}
    planner = with_costs(planner_for(tiny, table(tiny, ratios, fixed_ms=2.0, per_byte_ms=1e-6), ("none", "zstd"),
                                     edge_slowdown=1.0),
                         {name: (1.0, 1.0) for name in ("stem", "relu", "a", "b")}, default=(30.0, 0.1))
    link = Link(5.0)  # uncoded, a and b would take 40 ms
    best = planner.best(link)
    assert best.crossing == ("a", "b") and best.codec == "zstd"
    assert best.encode_ms == pytest.approx(2 * 2.0 + 1e-6 * best.transfer_bytes)  # the fixed part once per tensor
    assert best.decode_ms == pytest.approx(2 * 1.0 + 0.5e-6 * best.transfer_bytes)
    assert best.total_ms == pytest.approx(brute_force_cost(planner, link, LATENCY, ("none", "zstd")), rel=1e-9)


def test_fixed_costs_are_paid_once_per_crossing_tensor(tiny):
    codecs = CodecCosts(tiny.name, *(2 * [table(tiny, {}, fixed_ms=1.0, per_byte_ms=1e-6)]), edge_slowdown=2.0)
    coding = codecs.coding("zstd", 3, 3000, {"a": 1000, "b": 2000})
    assert coding.encode_ms == pytest.approx(2.0 * (2 * 1.0 + 1e-6 * 3000))
    assert coding.decode_ms == pytest.approx(2 * 0.5 + 0.5e-6 * 3000)


def old_best(planner: DagPlanner, link: Link, objective: Objective = LATENCY):
    """The planner before the joint choice: the float32 minimum cut, then its best codec."""
    return planner.cost(planner.model.partition(planner.search.best(link, objective).edge_nodes), link, objective)


def test_where_zstd_pays_the_joint_cut_differs_from_the_float32_cut_then_a_codec(res_net):
    # zstd halves the outputs of the last two stages (small tensors, cheap to cut after)
    halved = {n: 0.5 for n in res_net.nodes if n.startswith(("layer3", "layer4"))}
    planner = planner_for(res_net, table(res_net, halved), allowed_codecs("auto"))
    differs = []
    for bw in [round(0.5 * 1.25 ** i, 3) for i in range(36)]:  # 0.5 .. ~1200 Mbit/s
        link = Link(bw, 10.0)
        joint, old = planner.best(link), old_best(planner, link)
        assert joint.total_ms <= old.total_ms * (1 + 1e-9)
        for k in range(len(res_net) + 1):  # no traced prefix under any codec is cheaper
            for codec in (("none",) if k == len(res_net) else ("none", "zstd")):
                assert joint.total_ms <= planner.prefix_cost(k, link, codec=codec).total_ms * (1 + 1e-9)
        if joint.edge_nodes != old.edge_nodes:
            assert joint.codec == "zstd" and joint.total_ms < old.total_ms
            differs.append(bw)
    assert differs, "zstd never changed the cut"


@pytest.mark.parametrize("objective", [LATENCY, ENERGY], ids=["latency", "energy"])
def test_none_alone_is_the_float32_min_cut_as_before(res_net, objective):
    planner = planner_for(res_net, table(res_net, {n: 0.5 for n in res_net.nodes}), ("none",))
    for bw in (0.5, 5.85, 18.88, 100.0, 1e4):
        for load in (1.0, 3.0):
            link = Link(bw, 20.0, load)
            joint, old = planner.best(link, objective), old_best(planner, link, objective)
            assert joint.codec == "none" and joint.edge_nodes == old.edge_nodes
            assert joint.total_ms == pytest.approx(old.total_ms, rel=1e-12)


@pytest.mark.parametrize("codec", ["zstd", "fp16", "int8"])
def test_a_forced_tensor_codec_is_used_lossy_or_not(tiny, codec):
    planner = planner_for(tiny, table(tiny, tiny_zstd(tiny)), (codec,), edge_slowdown=40.0)
    link = Link(1000.0, 5.0)
    best = planner.best(link)
    assert best.crossing and best.codec == codec
    assert best.total_ms == pytest.approx(brute_force_cost(planner, link, LATENCY, (codec,)), rel=1e-9)


def test_a_forced_input_codec_sends_the_image_or_keeps_all_on_the_edge(tiny):
    planner = planner_for(tiny, table(tiny, {}), ("file",), IMAGE)
    fast, slow = planner.best(Link(1000.0)), planner.best(Link(0.01))
    assert fast.cut_point == 0 and fast.codec == "file" and fast.coded_bytes == 60_000
    assert slow.partition.all_edge


def test_edge_only_counts_the_image_preparation_as_the_all_edge_plan_does(tiny):
    plain = planner_for(tiny, table(tiny, {}), ("none",))
    with_image = planner_for(tiny, table(tiny, {}), ("none", "file"), IMAGE)
    assert with_image.codecs.image_edge_ms() > 0
    assert with_image.edge_only_ms() == pytest.approx(plain.edge_only_ms() + with_image.codecs.image_edge_ms())
    assert with_image.edge_only_ms() == pytest.approx(with_image.cost(with_image.all_edge, Link(1.0)).total_ms)


def test_lossy_codecs_are_not_admitted_under_auto_at_budget_0(tiny):
    # int8 would quarter every tensor, and its measured loss is small: still not at budget 0
    allowed = ("none", "zstd", "fp16", "int8")
    accuracy = {"fp16": [0.05] * 12, "int8": [0.1] * 12}
    planner = planner_for(tiny, table(tiny, {}), allowed, budget=0.0, accuracy=accuracy)
    for bw in (1.0, 20.0, 500.0):
        best = planner.best(Link(bw))
        assert not best.lossy and best.codec in ("none", "zstd")
    assert planner.codecs_for(tiny.prefix(3)) == ("none", "zstd")


def test_a_lossy_codec_needs_its_loss_within_budget_at_every_measured_cut(tiny):
    allowed = ("none", "zstd", "fp16", "int8")
    within = planner_for(tiny, table(tiny, {}), allowed, budget=0.5, accuracy={"int8": [0.1] * 12})
    assert within.best(Link(50.0)).codec == "int8"
    once_over = planner_for(tiny, table(tiny, {}), allowed, budget=0.5, accuracy={"int8": [0.1] * 11 + [0.6]})
    never_measured = planner_for(tiny, table(tiny, {}), allowed, budget=5.0, accuracy={})
    for planner in (once_over, never_measured):
        assert "int8" not in planner.codecs_for(tiny.prefix(3))
        assert planner.best(Link(50.0)).codec in ("none", "zstd")

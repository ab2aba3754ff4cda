"""The min-cut partition search is proved against brute force and against the chain scan."""
import itertools
import random

import pytest

from predictor import LatencyPredictor, Link
from predictor.planner import ChainPlanner
from predictor.planner.dag_cut import DagNode, graph_partition, is_valid, min_cut_partition, partition_cost


def random_dag(rng: random.Random, n: int):
    names = [f"n{i}" for i in range(n)]
    nodes = {"n0": DagNode("n0", 0.0, 0.0, rng.choice([1000, 50_000, 600_000]))}  # the input
    for name in names[1:]:
        nodes[name] = DagNode(name, rng.uniform(0, 50), rng.uniform(0, 10), rng.choice([100, 4000, 80_000, 800_000]))
    edges = set()
    for j in range(1, n):  # every node reads an earlier one; some read two or three (skips, concats)
        for i in rng.sample(range(j), k=min(j, rng.choice([1, 1, 2, 3]))):
            edges.add((names[i], names[j]))
    return nodes, sorted(edges)


def brute_force(nodes, edges, source, bw, rtt, cloud_load=1.0):
    best = None
    others = [n for n in nodes if n != source]
    for r in range(len(others) + 1):
        for subset in itertools.combinations(others, r):
            edge_nodes = {source, *subset}
            if not is_valid(edges, edge_nodes, source):
                continue
            cost = partition_cost(nodes, graph_partition(nodes, edges, edge_nodes), Link(bw, rtt, cloud_load))
            if best is None or cost.total_ms < best.total_ms:
                best = cost
    return best


@pytest.mark.parametrize("seed", range(40))
def test_min_cut_equals_brute_force_on_random_dags(seed):
    rng = random.Random(seed)
    nodes, edges = random_dag(rng, rng.randint(4, 10))
    bw, rtt, load = rng.choice([0.5, 5.85, 50, 1000]), rng.choice([0.0, 20.0]), rng.choice([1.0, 1.7, 3.0])
    found = min_cut_partition(nodes, edges, "n0", Link(bw, rtt, load))
    assert is_valid(edges, found.edge_nodes, "n0")
    assert found.total_ms == pytest.approx(brute_force(nodes, edges, "n0", bw, rtt, load).total_ms)


def test_a_tensor_read_twice_is_sent_once():
    # x -> a -> {b, c} -> d : a's output read by two cloud nodes crosses once
    nodes = {"x": DagNode("x", 0, 0, 10**6), "a": DagNode("a", 1, 1, 1000),
             "b": DagNode("b", 100, 1, 10), "c": DagNode("c", 100, 1, 10), "d": DagNode("d", 100, 1, 10)}
    edges = [("x", "a"), ("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]
    found = min_cut_partition(nodes, edges, "x", Link(8.0))
    assert found.edge_nodes == {"x", "a"} and found.crossing == ("a",)
    assert found.transfer_bytes == 1000 and found.transfer_ms == pytest.approx(1.0)


def chain_as_dag(planner: ChainPlanner):
    names = ["input"] + [f"u{k}" for k in range(1, planner.num_units + 1)]
    nodes = {"input": DagNode("input", 0.0, 0.0, planner.cut_bytes[0])}
    for k in range(1, planner.num_units + 1):
        nodes[names[k]] = DagNode(names[k], planner.edge_unit_ms[k - 1], planner.cloud_unit_ms[k - 1],
                                  planner.info.units[k - 1].out_bytes)
    return nodes, list(zip(names, names[1:]))


@pytest.mark.parametrize("name", ["le_net", "alex_net", "mobile_net", "vgg_net"])
@pytest.mark.parametrize("bw, rtt", [(1.1, 0.0), (5.85, 20.0), (18.88, 0.0), (100.0, 5.0), (1000.0, 0.0)])
def test_chain_models_get_the_linear_scans_cut_and_cost(chain_models, name, bw, rtt):
    planner = ChainPlanner(chain_models[name], LatencyPredictor.load("edge"), LatencyPredictor.load("cloud"),
                           edge_slowdown=5.0)
    nodes, edges = chain_as_dag(planner)
    found = min_cut_partition(nodes, edges, "input", Link(bw, rtt))
    best = planner.best(Link(bw, rtt))
    assert found.total_ms == pytest.approx(best.total_ms)
    assert len(found.edge_nodes) - 1 == best.cut_point or found.total_ms == pytest.approx(
        planner.cut(len(found.edge_nodes) - 1, Link(bw, rtt)).total_ms)  # ties: an equally cheap cut


def test_extreme_bandwidths_send_everything_or_nothing():
    rng = random.Random(7)
    nodes, edges = random_dag(rng, 8)
    nodes = {n: DagNode(n, v.edge_ms + 1, v.cloud_ms * 0.01, v.out_bytes) for n, v in nodes.items()}
    assert min_cut_partition(nodes, edges, "n0", Link(1e9)).edge_nodes == {"n0"}  # all on the faster cloud
    assert min_cut_partition(nodes, edges, "n0", Link(1e-6)).edge_nodes == set(nodes)  # all on the edge


def test_a_free_edge_keeps_everything_and_dear_transfers_are_never_cut():
    rng = random.Random(11)
    nodes, edges = random_dag(rng, 8)
    free = {n: DagNode(n, 0.0, v.cloud_ms + 1, v.out_bytes) for n, v in nodes.items()}
    assert min_cut_partition(free, edges, "n0", Link(5.0)).edge_nodes == set(nodes)  # costs nothing at home
    # a link so slow that every transfer costs far more than running everything at home (the
    # capacities clamped to twice that): the cut stays exact
    found = min_cut_partition(nodes, edges, "n0", Link(1e-9))
    assert found.edge_nodes == set(nodes) and found.total_ms == pytest.approx(sum(v.edge_ms for v in nodes.values()))

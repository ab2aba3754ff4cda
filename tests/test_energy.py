"""The energy objective: the power table, the energy-optimal cut (chains and DAGs), the scripts."""
import json
import random

import pytest

import deployment
from net.emulation.link import NETWORK_PRESETS_MBPS
from predictor import LATENCY, LatencyPredictor, Link, Objective
from predictor.energy import DEFAULT_POWER_PROFILE, EdgePower, PowerProfile, PowerProfileError
from predictor.planner import ChainPlanner
from predictor.planner.dag_cut import graph_partition, is_valid, min_cut_partition, partition_cost
from tests.test_dag_cut import random_dag

NETWORKS = NETWORK_PRESETS_MBPS


@pytest.fixture(scope="module")
def predictors():
    return LatencyPredictor.load("edge"), LatencyPredictor.load("cloud")


def test_the_shipped_table_names_a_source_for_every_figure():
    profile = PowerProfile.load()
    assert set(profile.networks) == set(NETWORKS)
    keys = ["compute_mw", "idle_mw"] + [f"{n}.{k}" for n in NETWORKS for k in ("send_mw", "wait_mw")]
    assert set(profile.sources) == set(keys)
    for key in keys:
        assert len(profile.sources[key]) > 20 and "no source" not in profile.sources[key]


def test_energy_is_power_times_time():
    power = EdgePower("wifi", compute_mw=500.0, idle_mw=10.0, send_mw=400.0, wait_mw=30.0)
    # 500 mW x 20 ms + 400 mW x 50 ms + (10 + 30) mW x 100 ms = 10 + 20 + 4 mJ
    assert power.energy_mj(20.0, 50.0, 100.0) == pytest.approx(34.0)


@pytest.mark.parametrize("name", ["le_net", "alex_net", "mobile_net", "vgg_net"])
@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("slowdown, rtt", [(1.0, 0.0), (5.0, 20.0), (10.0, 0.0)])
def test_the_energy_cut_is_the_least_modelled_energy_of_all_cuts(chain_models, predictors, name, network,
                                                                 slowdown, rtt):
    planner = ChainPlanner(chain_models[name], *predictors, edge_slowdown=slowdown)
    power = PowerProfile.load().for_network(network)
    link = Link(NETWORKS[network], rtt)
    table = planner.table(link, Objective("latency", power))
    chosen = planner.best(link, Objective("energy", power))
    assert chosen.energy_mj == pytest.approx(min(c.energy_mj for c in table))
    # and the energies are the model's sum of power x time, cut by cut
    for c in table[:-1]:  # something is sent: the RTT is waited for, like the cloud's part
        assert c.energy_mj == pytest.approx(power.energy_mj(c.edge_ms, c.transfer_ms - rtt, rtt + c.cloud_ms))
    assert table[-1].energy_mj == pytest.approx(power.energy_mj(table[-1].edge_ms, 0.0, 0.0))


def test_a_slow_link_keeps_more_layers_on_the_edge_for_energy(chain_models, predictors):
    power = PowerProfile.load().for_network("wifi")
    moved = differs = 0
    for name in ["alex_net", "mobile_net", "vgg_net"]:
        planner = ChainPlanner(chain_models[name], *predictors, edge_slowdown=5.0)
        bandwidths = (0.5, 5.0, 18.88, 50.0, 500.0)
        cuts = [planner.best_cut_point(Link(bw), Objective("energy", power)) for bw in bandwidths]
        assert cuts == sorted(cuts, reverse=True)  # never fewer edge layers on a slower link
        moved += cuts[0] > cuts[-1]
        differs += cuts != [planner.best_cut_point(Link(bw)) for bw in bandwidths]  # not the latency cuts
    assert moved >= 2 and differs >= 1


def write_profile(tmp_path, doc) -> str:
    path = tmp_path / "phone.json"
    path.write_text(json.dumps(doc))
    return str(path)


def cut_json(capsys, *argv) -> dict:
    assert deployment.main(["-t", "alex_net", "--json", *argv]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_a_power_profile_moves_the_energy_cut_the_way_its_numbers_say(tmp_path, capsys):
    args = ["--bandwidth", "wifi", "--edge-slowdown", "5", "--objective", "energy"]
    shipped = cut_json(capsys, *args)
    n = len(shipped["cuts"]) - 1
    # a radio that costs a fortune to send with: nothing is worth sending
    costly_radio = write_profile(tmp_path, {"networks": {"wifi": {"send_mw": 1e7}}})
    assert cut_json(capsys, *args, "--power-profile", costly_radio)["best_cut"] == n
    # a processor that costs a fortune and a free radio: send the input straight away
    costly_cpu = write_profile(tmp_path, {"compute_mw": 1e7, "networks": {"wifi": {"send_mw": 1, "wait_mw": 1}}})
    doc = cut_json(capsys, *args, "--power-profile", costly_cpu)
    assert doc["best_cut"] == 0 and doc["power_mw"]["compute"] == 1e7 and doc["power_mw"]["send"] == 1
    # the latency objective ignores the powers: the same cut whatever the profile
    latency = [cut_json(capsys, "--bandwidth", "wifi", "--edge-slowdown", "5", "--power-profile", p)["best_cut"]
               for p in (costly_radio, costly_cpu)]
    assert latency == [shipped["best_latency_cut"]] * 2


def test_show_puts_energy_beside_latency_and_marks_both_optima(tmp_path, capsys):
    # a radio that costs a fortune keeps the least-energy plan home, where a 20x slower edge is
    # never the fastest: the two optima differ whatever the shipped profile predicts
    costly_radio = write_profile(tmp_path, {"networks": {"wifi": {"send_mw": 1e7}}})
    args = ["--bandwidth", "wifi", "--edge-slowdown", "20", "--codec", "none", "--power-profile", costly_radio]
    doc = cut_json(capsys, *args)
    assert doc["objective"] == "latency" and doc["network"] == "wifi"
    assert doc["best_cut"] == doc["best_latency_cut"] != doc["best_energy_cut"] == len(doc["cuts"]) - 1
    assert all("energy_mj" in c for c in doc["cuts"])
    assert min(doc["cuts"], key=lambda c: c["energy_mj"])["cut_point"] == doc["best_energy_cut"]
    deployment.main(["-t", "alex_net", "--objective", "energy", "--show", *args])
    out = capsys.readouterr().out
    assert "energy mJ" in out and "<- best (least energy)" in out and "<- fastest" in out
    assert "modelled, not measured" in out


def test_without_a_known_network_only_latency_is_reported(capsys):
    doc = cut_json(capsys, "--bandwidth", "10")
    assert "energy_mj" not in doc["cuts"][0] and "best_energy_cut" not in doc
    doc = cut_json(capsys, "--bandwidth", "10", "--network", "lte")
    assert doc["network"] == "lte" and "energy_mj" in doc["cuts"][0]


@pytest.mark.parametrize("profile, message", [
    ("{not json", "not a JSON power profile"),
    ('{"compute_mw": -5}', "compute_mw must be a power in mW >= 0"),
    ('{"compute_mw": {"value": "lots"}}', "compute_mw must be a power"),
    ('{"cpu_mw": 5}', "unknown entries ['cpu_mw']"),
    ('{"networks": {"wifi": {"tx_mw": 5}}}', "unknown entries ['tx_mw']"),
    ('{"networks": {"5g": {"send_mw": 5}}}', "needs both send_mw and wait_mw"),
    ('[1, 2]', "a JSON object"),
])
def test_bad_power_profiles_get_one_clear_line(tmp_path, capsys, profile, message):
    path = tmp_path / "bad.json"
    path.write_text(profile)
    with pytest.raises(SystemExit) as e:
        deployment.main(["-t", "le_net", "--bandwidth", "3g", "--show", "--power-profile", str(path)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and "Traceback" not in err


@pytest.mark.parametrize("argv, message", [
    (["--bandwidth", "10", "--objective", "energy"], "--network 3g|lte|wifi"),
    (["--bandwidth", "10", "--network", "5g"], "no power figures for network '5g'"),
    (["--bandwidth", "3g", "--power-profile", "/nonexistent/phone.json"], "cannot read the power profile"),
])
def test_energy_options_misused_get_one_clear_line(capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        deployment.main(["-t", "le_net", "--show", *argv])
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and "Traceback" not in err


def test_a_new_network_can_be_added_by_a_profile(tmp_path):
    path = write_profile(tmp_path, {"networks": {"5G": {"send_mw": 900, "wait_mw": 300}}})
    power = PowerProfile.load(path).for_network("5g")
    assert (power.send_mw, power.wait_mw, power.compute_mw) == (900, 300, PowerProfile.load().compute_mw)
    with pytest.raises(PowerProfileError):
        PowerProfile.load(path).for_network("6g")
    assert DEFAULT_POWER_PROFILE.is_file()


def brute_force_energy(nodes, edges, source, bw, rtt, power):
    import itertools
    others = [n for n in nodes if n != source]
    best = None
    for r in range(len(others) + 1):
        for subset in itertools.combinations(others, r):
            edge_nodes = {source, *subset}
            if is_valid(edges, edge_nodes, source):
                cost = partition_cost(nodes, graph_partition(nodes, edges, edge_nodes), Link(bw, rtt),
                                      Objective("latency", power))
                if best is None or cost.energy_mj < best.energy_mj:
                    best = cost
    return best


@pytest.mark.parametrize("seed", range(20))
def test_the_dag_energy_min_cut_equals_brute_force(seed):
    rng = random.Random(100 + seed)
    nodes, edges = random_dag(rng, rng.randint(4, 9))
    bw, rtt = rng.choice([0.5, 5.85, 50]), rng.choice([0.0, 20.0])
    power = EdgePower("x", rng.uniform(100, 2000), rng.uniform(0, 50), rng.uniform(100, 3000), rng.uniform(10, 1000))
    found = min_cut_partition(nodes, edges, "n0", Link(bw, rtt), Objective("energy", power))
    assert is_valid(edges, found.edge_nodes, "n0")
    assert found.energy_mj == pytest.approx(brute_force_energy(nodes, edges, "n0", bw, rtt, power).energy_mj)


def test_dag_show_gives_both_partitions(capsys):
    assert deployment.main(["-t", "google_net", "--bandwidth", "lte", "--edge-slowdown", "10",
                            "--objective", "energy", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert doc["objective"] == "energy" and doc["network"] == "lte"
    assert doc["energy_mj"] == pytest.approx(doc["best_energy"]["energy_mj"], abs=1e-3)
    assert doc["best_energy"]["energy_mj"] <= doc["best_latency"]["energy_mj"] + 1e-6
    assert doc["best_latency"]["total_ms"] <= doc["best_energy"]["total_ms"] + 1e-6
    assert doc["energy_mj"] <= min(doc["edge_only_energy_mj"], doc["cloud_only_energy_mj"]) + 1e-6


@pytest.mark.slow
def test_edge_api_reports_energy_and_chooses_for_it(capsys):
    from net.cloud.server import CloudServer
    from tests.test_online import run_edge
    reports = {}
    with CloudServer("127.0.0.1", 0).start() as server:  # its own: an idle cloud, load 1
        host, port = server.address
        for objective in ("latency", "energy"):
            code, out, _ = run_edge(capsys, "-i", host, "-p", str(port), "-t", "alex_net", "--bandwidth", "wifi",
                                    "--edge-slowdown", "5", "--objective", objective, "--json")
            assert code == 0 and "edge energy (modelled, not measured)" in out
            reports[objective] = json.loads(out.strip().splitlines()[-1])
    assert {r["objective"] for r in reports.values()} == {"latency", "energy"}
    assert set(reports["energy"]["energy_mj"]) == {"predicted", "from_measured_times"}
    # the cuts deployment.py --show marks as fastest and least energy, made for real
    doc = cut_json(capsys, "--bandwidth", "wifi", "--edge-slowdown", "5")
    assert reports["latency"]["cut_point"] == doc["best_latency_cut"]
    assert reports["energy"]["cut_point"] == doc["best_energy_cut"]
    assert reports["energy"]["energy_mj"]["predicted"] == pytest.approx(doc["cuts"][doc["best_energy_cut"]]["energy_mj"])


def test_task_summary_gives_energy_per_model():
    from net.edge.tasks import summarize
    rows = [{"model": "le_net", "cut_point": k, "measured_total_ms": 10.0, "predicted_total_ms": 10.0,
             "predicted_edge_only_ms": 40.0, "predicted_cloud_only_ms": 20.0, "fallback": False,
             "energy_mj_from_measured_times": e, "predicted_energy_mj": e, "predicted_edge_only_energy_mj": 20.0}
            for k, e in [(0, 4.0), (5, 6.0)]]
    (s,) = summarize(rows)
    assert s["energy_mj"] == 5.0 and s["energy_saved_vs_edge_only_pct"] == pytest.approx(75.0)
    for r in rows:
        r["energy_mj_from_measured_times"] = None
    (s,) = summarize(rows)
    assert s["energy_mj"] is None and s["energy_saved_vs_edge_only_pct"] is None


def test_energy_of_the_measured_times_charges_them_as_the_prediction_does():
    from net.edge.runner import Times, _energy
    power = EdgePower("lte", compute_mw=500.0, idle_mw=0.0, send_mw=2000.0, wait_mw=500.0)
    measured = Times(edge=10.0, transfer=80.0, cloud=20.0, total=112.0)  # 2 ms of overhead
    e = _energy(Objective("energy", power), 1.0, measured, rtt_ms=50.0)
    # 500 x 10 + 2000 x (80 - 50) + 500 x (50 + 20 + 2), in mJ: the RTT is waited, not sent
    assert e == {"predicted": 1.0, "from_measured_times": pytest.approx(5 + 60 + 36)}
    all_edge = _energy(Objective("energy", power), 5.0, Times(edge=10.0, total=10.0), rtt_ms=50.0)
    assert all_edge["from_measured_times"] == pytest.approx(5.0)
    assert _energy(LATENCY, None, measured, 50.0) is None  # no powers: no energy

"""The figures: real PNGs of a sensible size, for a small and a large model and a task report."""
import struct

import pytest

import deployment
from models import ALL_MODEL_NAMES, get_dnn_model
from predictor import LatencyPredictor, Link, Objective
from predictor.deploy import cut_table_document
from predictor.planner import ChainPlanner
from utils.plots import plot_cut_table, plot_task_report, short_label

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, which must come first after the signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    return struct.unpack(">II", data[16:24])


def assert_good_png(path) -> None:
    width, height = png_size(path)
    assert width >= 600 and height >= 400, (width, height)
    assert path.stat().st_size > 10_000


@pytest.fixture(scope="module")
def predictors():
    return LatencyPredictor.load("edge"), LatencyPredictor.load("cloud")


@pytest.mark.parametrize("model, bandwidth_mbps, rtt_ms", [("le_net", 1.1, 0.0), ("vgg_net", 18.88, 20.0)])
def test_cut_table_figure(tmp_path, predictors, model, bandwidth_mbps, rtt_ms, monkeypatch):
    planner = ChainPlanner(get_dnn_model(model), *predictors)
    units = planner.unit_rows()
    assert len(units) == planner.num_units
    assert units[0]["label"] == planner.labels[1] and units[-1]["out_bytes"] > 0  # unit N's real output
    assert [u["out_bytes"] for u in units[:-1]] == planner.cut_bytes[1:-1]
    figures = capture_figures(monkeypatch)
    path = plot_cut_table(cut_table_document(planner, Link(bandwidth_mbps, rtt_ms)), units, tmp_path / f"{model}.png")
    assert_good_png(path)
    # what is drawn, not only that a picture exists: panel (a) has an edge and a cloud bar per unit
    # at the predicted heights, panel (b) the input's bar and one bar per unit's output size
    ax_lat, ax_bytes = figures[0].axes[:2]
    n = planner.num_units
    heights = [bar.get_height() for bar in ax_lat.patches]
    assert heights == pytest.approx([u["edge_ms"] for u in units] + [u["cloud_ms"] for u in units])
    sizes = [bar.get_height() for bar in ax_bytes.patches]
    assert len(sizes) == n + 1 and sizes[0] == planner.cut_bytes[0]
    assert sizes[1:] == [u["out_bytes"] for u in units]


def test_cut_table_rejects_mismatched_units(tmp_path, predictors):
    planner = ChainPlanner(get_dnn_model("le_net"), *predictors)
    with pytest.raises(ValueError, match="14 cuts, expected 13"):
        plot_cut_table(cut_table_document(planner, Link(10, 0)), planner.unit_rows()[:-1], tmp_path / "x.png")


def test_short_labels():
    assert short_label(0, "input") == "input"
    assert short_label(1, "Conv2d (features.0)") == "1 conv"
    assert short_label(4, "InvertedResidual (features.1)") == "4 invres"


def synthetic_tasks(n: int = 40) -> list[dict]:
    units = {"alex_net": 22, "le_net": 13, "mobile_net": 27}
    rows, bandwidths = [], [18.88, 5.85, 1.1, 50.0]
    for i in range(n):
        model = list(units)[i % 3]
        bandwidth = bandwidths[(i // 8) % len(bandwidths)]
        predicted = {"alex_net": 120.0, "le_net": 5.0, "mobile_net": 40.0}[model] * (10 / bandwidth) ** 0.3
        fallback = i == 17
        cut = units[model] if fallback or bandwidth < 2 else (i * 7) % units[model]
        rows.append({"task": i + 1, "model": model, "start_s": 0.7 * i, "bandwidth_mbps": bandwidth,
                     "cut_point": cut, "num_units": units[model], "cut_layer": "Conv2d (features.0)",
                     "predicted_edge_ms": predicted / 3, "predicted_transfer_ms": predicted / 3,
                     "predicted_cloud_ms": predicted / 3, "predicted_total_ms": predicted,
                     "measured_edge_ms": predicted / 3, "measured_transfer_ms": predicted / 2,
                     "measured_cloud_ms": predicted / 4,
                     "measured_total_ms": predicted * (1 + 0.1 * ((i % 5) - 2)) * (2 if fallback else 1),
                     "transfer_bytes": 0 if fallback else 1000 * i, "fallback": fallback, "top1": i % 10})
    return rows


def test_task_report_figure(tmp_path):
    path = plot_task_report(synthetic_tasks(), tmp_path / "tasks.png")
    assert_good_png(path)


def test_task_report_without_start_times(tmp_path):
    rows = synthetic_tasks(6)
    for row in rows:
        row["start_s"] = None
    assert_good_png(plot_task_report(rows, tmp_path / "tasks.png"))
    with pytest.raises(ValueError, match="no tasks"):
        plot_task_report([], tmp_path / "none.png")


def test_deployment_plot_alone_and_with_json(tmp_path, capsys):
    path = tmp_path / "figs" / "le_net.png"
    assert deployment.main(["-t", "le_net", "--bandwidth", "lte", "--rtt", "20", "--plot", str(path)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {path}"
    assert_good_png(path)
    path.unlink()
    assert deployment.main(["-t", "le_net", "--bandwidth", "3g", "--json", "--plot", str(path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == f"wrote {path}" and lines[-1].startswith('{"model": "le_net"')
    assert_good_png(path)


@pytest.mark.slow
def test_dag_model_plot_shows_every_prefix_and_where_the_min_cut_is(tmp_path, capsys, predictors):
    from models.dag import get_dag_model
    from predictor.energy import PowerProfile
    from predictor.planner import DagPlanner
    planner = DagPlanner(get_dag_model("res_net"), *predictors, edge_slowdown=10.0)
    power = PowerProfile.load().for_network("wifi")
    link = Link(18.88, 0.0)
    doc, units = cut_table_document(planner, link, Objective("energy", power)), planner.unit_rows()
    names = list(planner.model.nodes)
    assert len(doc["cuts"]) == len(units) + 1 == len(names)
    for k in (0, 17, len(names) - 1):  # the cost of running the first k nodes on the edge
        cost = planner.cost(planner.model.partition(names[:k + 1]), link, Objective("latency", power))
        assert doc["cuts"][k]["total_ms"] == pytest.approx(cost.total_ms, abs=1e-3)
        assert doc["cuts"][k]["energy_mj"] == pytest.approx(cost.energy_mj, abs=1e-3)
    assert doc["best_cut"] == min(range(len(names)), key=lambda k: doc["cuts"][k]["energy_mj"])
    best = planner.best(link, Objective("energy", power))
    assert best.energy_mj <= doc["cuts"][doc["best_cut"]]["energy_mj"] + 1e-3  # the min cut: no prefix beats it
    assert doc["note"].startswith("min cut over all partitions")
    path = tmp_path / "res_net.png"
    assert deployment.main(["-t", "res_net", "--bandwidth", "wifi", "--edge-slowdown", "10", "--plot", str(path),
                            "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == f"wrote {path}" and lines[-1].startswith('{"model": "res_net"')
    assert_good_png(path)


def capture_figures(monkeypatch) -> list:
    import utils.plots
    figures, save = [], utils.plots._save

    def keep(fig, path):
        figures.append(fig)
        return save(fig, path)
    monkeypatch.setattr(utils.plots, "_save", keep)
    return figures


def test_the_energy_cut_figure_title_is_not_clipped(tmp_path, predictors, monkeypatch):
    """docs/energy_cut_example.png's set-up: AlexNet, Wi-Fi, an edge 5x slower, energy."""
    from predictor.energy import PowerProfile
    figures = capture_figures(monkeypatch)
    planner = ChainPlanner(get_dnn_model("alex_net"), *predictors, edge_slowdown=5)
    document = cut_table_document(planner, Link(18.88, 0.0), Objective("energy", PowerProfile.load().for_network("wifi")))
    plot_cut_table(document, planner.unit_rows(), tmp_path / "cuts.png")
    fig = figures[0]
    renderer = fig.canvas.get_renderer()
    box = fig._suptitle.get_window_extent(renderer)
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width, (box, fig.bbox.width)


def test_a_model_has_the_same_colour_in_every_run(tmp_path, monkeypatch):
    figures = capture_figures(monkeypatch)
    rows = synthetic_tasks(12)
    plot_task_report(rows, tmp_path / "a.png", ALL_MODEL_NAMES)
    plot_task_report([r for r in rows if r["model"] != "alex_net"], tmp_path / "b.png", ALL_MODEL_NAMES)  # le_net comes first now

    def colours(fig):
        legend = fig.axes[0].get_legend() or fig.legends[0]
        return {h.get_label(): h.get_color() for h in legend.legend_handles if h.get_label() in
                ("alex_net", "le_net", "mobile_net")}
    first, second = colours(figures[0]), colours(figures[1])
    assert first["le_net"] == second["le_net"] and first["mobile_net"] == second["mobile_net"]
    assert len(set(first.values())) == 3


def test_the_cut_plot_shows_bytes_per_cut_per_codec(tmp_path):
    import deployment
    path = tmp_path / "codecs.png"
    assert deployment.main(["-t", "le_net", "--bandwidth", "lte", "--plot", str(path)]) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

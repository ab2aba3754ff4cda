"""The paper's headline figure from the decision-quality CSV: measured end-to-end latency of
edge-only, cloud-only and the chosen cut, for AlexNet, VGG16-BN, MobileNetV2 and EfficientNet-Lite0
on 3G, LTE and Wi-Fi (those of them the CSV has); from a run with codecs (--codec auto), also the
app that uploads the JPEG (`jpeg90` at cut 0), and the chosen cut's codec.

  python -m benchmarks.paper_figure [--csv runs/benchmarks/decision_quality.csv]
                                    [--out runs/benchmarks/paper_figure.png]

One group of three bars (four with the JPEG upload) per model x network. The bars are the medians
benchmarks.decision_quality measured in its interleaved rounds (edge_only_ms, cloud_only_ms,
chosen_ms, jpeg90_ms), where all were measured alike, so each bar's ratio is the speed-up written
above the chosen cut. Cloud-only is float32 from the input tensor in both kinds of run. A log axis
when the bars span more than 30x. Combinations missing from the CSV are left out.

Drawn on matplotlib's Agg canvas directly (a `Figure`, no pyplot), as utils/plots.py does.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from benchmarks import RESULTS_DIR, SHIPPED_RESULTS_DIR
from utils.plots import CLOUD_COLOUR, DPI, EDGE_COLOUR, TRANSFER_COLOUR, _fmt_ms, _maybe_log

MODELS = {"alex_net": "AlexNet", "vgg_net": "VGG16-BN", "mobile_net": "MobileNetV2",
          "efficient_net": "EfficientNet-Lite0"}
NETWORKS = {"3g": "3G", "lte": "LTE", "wifi": "Wi-Fi"}
CHOSEN_COLOUR = TRANSFER_COLOUR
JPEG_COLOUR = "#7f7f7f"
GROUP_WIDTH = 0.8  # of the unit between groups, shared by the group's bars


def read_results(path: Path) -> tuple[dict[str, str], list[dict]]:
    """The CSV's provenance (its sidecar NAME.provenance.json) and its rows."""
    from utils.provenance import read_csv_rows, read_provenance
    return {k: str(v) for k, v in read_provenance(path).items()}, read_csv_rows(path)


def chosen_ms(row: dict) -> float:
    """The chosen cut's median from the same runs as edge-only and cloud-only."""
    if row.get("rounds"):  # the interleaved method: chosen_ms is from the same rounds
        return float(row["chosen_ms"])
    if row.get("chosen_search_ms"):  # older CSVs: the search pass's median
        return float(row["chosen_search_ms"])
    return float(row["edge_only_ms"]) / float(row["speedup_vs_edge"])  # CSVs without the column


def figure_groups(rows: list[dict]) -> list[dict]:
    by_case = {(r["model"], r["bandwidth"].lower()): r for r in rows}
    groups = []
    for model, model_label in MODELS.items():
        for network, network_label in NETWORKS.items():
            row = by_case.get((model, network))
            if row is None:
                continue
            groups.append({"label": f"{model_label}\n{network_label} ({float(row['bandwidth_mbps']):g} Mbit/s)",
                           "edge": float(row["edge_only_ms"]), "cloud": float(row["cloud_only_ms"]),
                           "chosen": chosen_ms(row), "cut": int(row["chosen_cut"]), "units": int(row["units"]),
                           "codec": row.get("chosen_codec") or "none",
                           "jpeg": float(row["jpeg90_ms"]) if row.get("jpeg90_ms") else None})
    return groups


def cut_words(cut: int, units: int, codec: str = "none") -> str:
    if cut == units:
        return f"cut {cut} (edge-only)"
    where = "cut 0 (cloud-only)" if cut == 0 else f"cut {cut}/{units}"
    return where if codec == "none" else f"{where}, {codec}"


def plot_paper_figure(groups: list[dict], path: Path, edge_slowdown: str | None = None) -> Path:
    if not groups:
        raise ValueError(f"no rows for {', '.join(MODELS)} at {', '.join(NETWORKS)} in the CSV")
    fig = Figure(figsize=(max(7.0, 1.75 * len(groups) + 1.5), 5.6), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    xs = range(len(groups))
    series = [("edge-only", "edge", EDGE_COLOUR), ("cloud-only (float32)", "cloud", CLOUD_COLOUR),
              ("chosen cut", "chosen", CHOSEN_COLOUR)]
    with_jpeg = all(g["jpeg"] is not None for g in groups)
    if with_jpeg:
        series.append(("JPEG upload (jpeg90)", "jpeg", JPEG_COLOUR))
    width = GROUP_WIDTH / len(series)
    for i, (label, key, colour) in enumerate(series):
        dx = (i - (len(series) - 1) / 2) * width
        values = [g[key] for g in groups]
        bars = ax.bar([x + dx for x in xs], values, width=width, color=colour, label=label,
                      edgecolor="white", linewidth=0.5)
        for bar, v in zip(bars, values):  # the value inside the bar's top, rotated to fit
            ax.annotate(_fmt_ms(v), (bar.get_x() + bar.get_width() / 2, v), xytext=(0, -3),
                        textcoords="offset points", ha="center", va="top", rotation=90, fontsize=7.5,
                        color="white", fontweight="bold")
    values = [g[key] for g in groups for _, key, _ in series]
    _maybe_log(ax, values)
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo, hi * (2.5 if ax.get_yscale() == "log" else 1.35))  # room for the speed-ups
    for x, g in zip(xs, groups):
        top = max(g[key] for _, key, _ in series)
        text = (f"{cut_words(g['cut'], g['units'], g['codec'])}\n×{g['edge'] / g['chosen']:.2f} vs edge\n"
                f"×{g['cloud'] / g['chosen']:.2f} vs cloud")
        if with_jpeg:
            text += f"\n×{g['jpeg'] / g['chosen']:.2f} vs JPEG"
        ax.annotate(text, (x, top), xytext=(0, 4), textcoords="offset points", ha="center", va="bottom",
                    fontsize=8, linespacing=1.25)
    ax.set_xticks(list(xs), [g["label"] for g in groups], fontsize=9)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _fmt_ms(v)))
    ax.set_ylabel("measured end-to-end latency (median)")
    ax.grid(axis="y", which="major", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    device = f"edge emulated {float(edge_slowdown):g}× slower than the cloud; " if edge_slowdown else ""
    against = "edge-only, cloud-only, the JPEG upload" if with_jpeg else "edge-only, cloud-only"
    ax.set_title(f"Measured latency: {against} and the chosen cut\n({device}paced uplink, "
                 "real sockets on one machine)", fontsize=10, loc="left")
    ax.legend(loc="upper right", fontsize=9, frameon=False, ncols=len(series), handlelength=1.2)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def main(argv=None) -> Path:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    fresh = RESULTS_DIR / "decision_quality.csv"
    p.add_argument("--csv", type=Path, default=fresh if fresh.is_file() else SHIPPED_RESULTS_DIR / "decision_quality.csv",
                   help="default: a fresh run's runs/benchmarks/decision_quality.csv, else the shipped one")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "paper_figure.png")
    args = p.parse_args(argv)
    if not args.csv.is_file():
        p.exit(2, f"error: {args.csv} not found: run python -m benchmarks.decision_quality first\n")
    meta, rows = read_results(args.csv)
    try:
        path = plot_paper_figure(figure_groups(rows), args.out, meta.get("edge_slowdown"))
    except ValueError as e:
        p.exit(2, f"error: {args.csv}: {e}\n")
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()

"""Figures a person would rather look at than read: the cut table of one model at one link, and
the report of a multi-task run.

Drawn on matplotlib's Agg canvas directly (a `Figure`, no pyplot), so importing this module
changes no global backend and works on machines without a display.
"""
from __future__ import annotations

import math
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator

EDGE_COLOUR, TRANSFER_COLOUR, CLOUD_COLOUR = "#4C72B0", "#DD8452", "#55A868"
BYTES_COLOUR, INPUT_COLOUR, BANDWIDTH_COLOUR = "#8172B3", "#C8C2DE", "#7F7F7F"
FALLBACK_COLOUR, ENERGY_COLOUR = "#C44E52", "#B8860B"
DPI = 110
LOG_SCALE_RATIO = 30        # a log axis when the largest positive value is this many times the smallest
CLIP_AT_BEST = 3.0          # the cut panel shows totals up to this many times the chosen cut's
_SHORT_KIND = {"Conv2d": "conv", "BatchNorm2d": "bn", "ReLU": "relu", "ReLU6": "relu6",
               "MaxPool2d": "maxpool", "AvgPool2d": "avgpool", "AdaptiveAvgPool2d": "avgpool",
               "Flatten": "flatten", "Linear": "fc", "Dropout": "dropout",
               "InvertedResidual": "invres"}


def short_label(k: int, label: str) -> str:
    """'Conv2d (features.0)' as unit 1 -> '1 conv'; the input (k = 0) -> 'input'."""
    if k == 0:
        return "input"
    kind = label.split(" ", 1)[0]
    return f"{k} {_SHORT_KIND.get(kind, kind.lower())}"


# ----------------------------------------------------------------------------- cut table

CODEC_MARKERS = {"zstd": ("o", "#2F4F4F"), "fp16": ("^", "#8B4513"), "int8": ("v", "#800080")}


def plot_cut_table(document: dict, units: list[dict], path, codec_bytes: dict[str, list[int]] | None = None) -> Path:
    """Three panels sharing one x axis (unit k / cut after unit k): predicted edge and cloud
    latency of each unit, the size of each unit's output, and the predicted total of every cut
    (edge / transfer / cloud stacked) with the chosen cut marked. `document` is what
    `predictor.deploy.cut_table_document` returns, `units` what `Planner.unit_rows` returns;
    `codec_bytes`, per tensor codec, the predicted coded bytes at each cut k = 0..N-1 (markers
    on the size panel)."""
    cuts, n = document["cuts"], len(units)
    if len(cuts) != n + 1:
        raise ValueError(f"the document has {len(cuts)} cuts, expected {n + 1} for {n} units")
    best = document["best_cut"]
    chosen = cuts[best]
    unit = document.get("unit_name", "unit")  # DAG models: "node" (prefixes of the traced order)

    width_in = min(max(10.0, 4.0 + 0.26 * n), 20.0)
    fig = Figure(figsize=(width_in, 10.5), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax_lat, ax_bytes, ax_cut = fig.subplots(3, 1, sharex=True, height_ratios=[1.0, 0.75, 1.35])
    xs = list(range(1, n + 1))

    # (a) per-unit latency, edge and cloud side by side
    edge_ms = [u["edge_ms"] for u in units]
    cloud_ms = [u["cloud_ms"] for u in units]
    ax_lat.bar([x - 0.2 for x in xs], edge_ms, width=0.4, color=EDGE_COLOUR, label="on the edge")
    ax_lat.bar([x + 0.2 for x in xs], cloud_ms, width=0.4, color=CLOUD_COLOUR, label="on the cloud")
    _maybe_log(ax_lat, edge_ms + cloud_ms)
    for x, e, c in zip(xs, edge_ms, cloud_ms):   # dropout, flatten: predicted free, say so
        if not e and not c:
            ax_lat.text(x, 0.02, "0", transform=ax_lat.get_xaxis_transform(), ha="center",
                        va="bottom", fontsize=8, color="#777777")
    ax_lat.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _fmt_ms(v)))
    ax_lat.set_ylabel(f"predicted latency\nper {unit}")
    ax_lat.set_title(f"(a) each {unit}'s predicted latency", loc="left", fontsize=10)
    _legend_above(ax_lat)

    # (b) size of what a cut after each unit would send (unit k's output; the input at 0)
    out_bytes = [u["out_bytes"] for u in units]
    input_bytes = cuts[0]["transfer_bytes"]
    ax_bytes.bar([0], [input_bytes], width=0.8, color=INPUT_COLOUR, label="input (sent at cut 0)")
    ax_bytes.bar(xs, out_bytes, width=0.8, color=BYTES_COLOUR, label=f"{unit}'s output")
    for codec, sizes in (codec_bytes or {}).items():
        marker, colour = CODEC_MARKERS.get(codec, ("x", "black"))
        ax_bytes.scatter(range(len(sizes)), sizes, marker=marker, color=colour, s=18, zorder=3,
                         label=f"coded with {codec} (predicted)")
    _maybe_log(ax_bytes, out_bytes + [input_bytes] + [b for v in (codec_bytes or {}).values() for b in v])
    ax_bytes.axhline(input_bytes, color=INPUT_COLOUR, linestyle="--", linewidth=1)
    ax_bytes.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _fmt_bytes(v)))
    ax_bytes.set_ylabel("output size")
    ax_bytes.set_title(f"(b) each {unit}'s output: the tensor a cut after it sends", loc="left", fontsize=10)
    if codec_bytes:  # six entries: inside, over the small tensors at the right
        ax_bytes.legend(loc="upper right", ncols=2, fontsize=8, framealpha=0.85, handlelength=1.2)
    else:
        _legend_above(ax_bytes)

    # the chosen cut on the unit panels: units 1..k on the edge, k+1..N on the cloud
    if best < n:
        box = {"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85}
        for ax in (ax_lat, ax_bytes):
            ax.axvline(best + 0.5, color="black", linestyle=":", linewidth=1.2)
            where = {"xy": (best + 0.5, 0.97), "xycoords": ax.get_xaxis_transform(),
                     "textcoords": "offset points", "va": "top", "fontsize": 8, "bbox": box}
            if best > 0:
                ax.annotate("edge ←", xytext=(-4, 0), ha="right", **where)
            ax.annotate("→ cloud", xytext=(4, 0), ha="left", **where)

    # (c) predicted total of every cut, stacked, clipped so that the good cuts stay readable
    ks = list(range(n + 1))
    edge = [c["edge_ms"] for c in cuts]
    transfer = [c["transfer_ms"] for c in cuts]
    cloud = [c["cloud_ms"] for c in cuts]
    totals = [c["total_ms"] for c in cuts]
    ax_cut.bar(ks, edge, width=0.8, color=EDGE_COLOUR, label="edge")
    ax_cut.bar(ks, transfer, width=0.8, bottom=edge, color=TRANSFER_COLOUR, label="transfer + RTT")
    ax_cut.bar(ks, cloud, width=0.8, bottom=[e + t for e, t in zip(edge, transfer)],
               color=CLOUD_COLOUR, label="cloud")
    ax_cut.bar([best], [totals[best]], width=0.8, fill=False, edgecolor="black", linewidth=2)
    top = max(totals)
    cap = max(CLIP_AT_BEST * chosen["total_ms"], 1e-3)
    if top > cap * 1.15:
        ax_cut.set_ylim(0, cap)
        for k, total in enumerate(totals):
            if total > cap:
                ax_cut.text(k, cap * 0.985, _fmt_ms(total), rotation=90, ha="center", va="top",
                            fontsize=7, color="white", fontweight="bold")
        ax_cut.set_title(f"(c) predicted total of every cut (clipped at {_fmt_ms(cap)}: "
                         "totals written on the bars)", loc="left", fontsize=10)
    else:
        ax_cut.set_ylim(0, top * 1.18)
        ax_cut.set_title("(c) predicted total of every cut", loc="left", fontsize=10)
    ylim_top = ax_cut.get_ylim()[1]
    # the label beside the arrow, not centred on it, where centring would cross the frame
    side = "left" if best < 0.1 * n else "right" if best > 0.9 * n else "center"
    ax_cut.annotate(f"chosen: k = {best}\n{_fmt_ms(chosen['total_ms'])}",
                    xy=(best, min(chosen["total_ms"], ylim_top)),
                    xytext=({"left": -8, "right": 8, "center": 0}[side], 22),
                    textcoords="offset points", ha=side, va="bottom", multialignment="center", fontsize=9,
                    fontweight="bold", arrowprops={"arrowstyle": "->", "color": "black"},
                    bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": "black", "lw": 0.8})
    ax_cut.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _fmt_ms(v)))
    ax_cut.set_ylabel("predicted total")
    if "best_energy_cut" in document:
        _energy_curve(ax_cut, document)
    ax_cut.set_xlabel(f"k: cut after {unit} k (the edge runs {unit}s 1..k; 0 = all on the cloud, "
                      f"{n} = all on the edge)")
    _legend_above(ax_cut)

    labels = [short_label(k, c["layer"]) for k, c in enumerate(cuts)]
    _set_unit_ticks(ax_cut, labels, best, width_in)
    for ax in (ax_lat, ax_bytes, ax_cut):
        ax.set_xlim(-0.6, n + 0.6)
        ax.grid(axis="y", alpha=0.3, which="major")
        ax.set_axisbelow(True)

    objective = document.get("objective", "latency")
    fastest = document.get("best_latency_cut", best)
    energy_note = f", {chosen['energy_mj']:.0f} mJ" if "energy_mj" in chosen else ""
    fastest_note = (f"fastest: k = {fastest}, {_fmt_ms(totals[fastest])}, {cuts[fastest]['energy_mj']:.0f} mJ;  "
                    if "energy_mj" in chosen else "")
    fig.suptitle(_fit_lines(fig, [
        f"{document['model']} at {document['bandwidth_mbps']:g} Mbit/s uplink, RTT {document['rtt_ms']:g} ms: "
        f"predicted latency per {unit} and per cut",
        f"chosen for {objective}: k = {best} ({_cut_words(best, n, chosen['layer'])}): edge "
        f"{_fmt_ms(chosen['edge_ms'])} + transfer {_fmt_ms(chosen['transfer_ms'])} + cloud "
        f"{_fmt_ms(chosen['cloud_ms'])} = {_fmt_ms(chosen['total_ms'])}{energy_note}",
        f"{fastest_note}all on the cloud (k = 0): {_fmt_ms(totals[0])};  all on the edge (k = {n}): "
        f"{_fmt_ms(totals[n])}", *([document["note"]] if document.get("note") else [])], 11), fontsize=11)
    return _save(fig, path)


def _energy_curve(ax, document: dict) -> None:
    """The modelled edge energy of every cut on a second axis, its least-energy cut starred."""
    cuts, best = document["cuts"], document["best_energy_cut"]
    energy = [c["energy_mj"] for c in cuts]
    ax_energy = ax.twinx()
    ax_energy.plot(range(len(cuts)), energy, color=ENERGY_COLOUR, marker=".", linewidth=1.5,
                   label=f"edge energy, modelled ({document['network']} radio)")
    ax_energy.plot([best], [energy[best]], marker="*", markersize=15, color=ENERGY_COLOUR,
                   markeredgecolor="black", linestyle="none", label=f"least energy: k = {best}")
    ax_energy.set_ylim(0, min(max(energy), CLIP_AT_BEST * max(energy[best], 1e-3)) * 1.18)
    ax_energy.set_ylabel("modelled edge energy (mJ)", color=ENERGY_COLOUR)
    ax_energy.tick_params(axis="y", colors=ENERGY_COLOUR)
    ax_energy.legend(loc="upper right", fontsize=8, framealpha=0.9)


def _set_unit_ticks(ax, labels: list[str], best: int, width_in: float) -> None:
    """One tick per cut; labels thinned to what fits side by side (about 7 points each when
    rotated), always keeping the chosen cut's label, drawn in bold."""
    fits = max(int(width_in * 72 / 9), 8)
    step = max(1, math.ceil(len(labels) / fits))
    ax.set_xticks(range(len(labels)))
    shown = [lab if (k % step == 0 or k == best) and not (k != best and abs(k - best) < step)
             else "" for k, lab in enumerate(labels)]
    rotation = 90 if len(labels) > 24 else 55
    ax.set_xticklabels(shown, rotation=rotation, ha="right" if rotation != 90 else "center",
                       rotation_mode="anchor" if rotation != 90 else "default", fontsize=8)
    ax.get_xticklabels()[best].set_fontweight("bold")
    ax.tick_params(axis="x", length=2)


# ----------------------------------------------------------------------------- task report

def plot_task_report(rows: list[dict], path, model_order: tuple[str, ...] = ()) -> Path:
    """The multi-task run: uplink bandwidth and chosen cut over time (top), measured against
    predicted total latency of each task (bottom), tasks that fell back to local marked."""
    if not rows:
        raise ValueError("no tasks to plot")
    rows = sorted(rows, key=lambda r: (r.get("start_s") is None, r.get("start_s") or 0))
    times = [r.get("start_s") for r in rows]
    if any(t is None for t in times):          # no timing recorded: plot against the task number
        times, xlabel = list(range(1, len(rows) + 1)), "task"
    else:
        xlabel = "task start (s since the run began)"
    models = list(dict.fromkeys(r["model"] for r in rows))
    palette = ["#4C72B0", "#DD8452", "#55A868", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C"]
    markers = ["o", "s", "^", "D", "v", "P", "X"]
    style = {m: model_style(m, palette, markers, model_order) for m in models}

    fig = Figure(figsize=(12, 8.5), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax_bw, ax_lat = fig.subplots(2, 1, sharex=True, height_ratios=[1.0, 1.15])

    # top: bandwidth as a step line (it holds until the next measurement), cuts on a second axis;
    # a task that never had a measurement (cloud unreachable) has none to draw: NaN leaves a gap
    bandwidths = [math.nan if r["bandwidth_mbps"] is None else r["bandwidth_mbps"] for r in rows]
    ax_bw.step(times, bandwidths, where="post", color=BANDWIDTH_COLOUR, linewidth=2, alpha=0.6)
    ax_bw.fill_between(times, [0 if math.isnan(b) else b for b in bandwidths], step="post",
                       color=BANDWIDTH_COLOUR, alpha=0.12)
    previous = None
    for t, b in zip(times, bandwidths):        # write each new bandwidth where it starts
        if not math.isnan(b) and b != previous:
            ax_bw.annotate(f"{b:.3g}", (t, b), xytext=(3, 3), textcoords="offset points", fontsize=8,
                           color="#555555")
            previous = b
    measured = [b for b in bandwidths if not math.isnan(b)]
    ax_bw.set_ylim(0, max(measured, default=1.0) * 1.12)
    ax_bw.set_ylabel("uplink Mbit/s (grey)")
    ax_cut = ax_bw.twinx()
    max_units = 0
    for model in models:
        colour, marker = style[model]
        mine = [(t, r) for t, r in zip(times, rows) if r["model"] == model]
        ax_cut.step([t for t, _ in mine], [r["cut_point"] for _, r in mine], where="post",
                    color=colour, linewidth=1, alpha=0.5)
        ax_cut.scatter([t for t, _ in mine], [r["cut_point"] for _, r in mine], color=colour,
                       marker=marker, s=36, zorder=3, edgecolor="white", linewidth=0.5)
        max_units = max(max_units, *(r.get("num_units") or r["cut_point"] for _, r in mine))
    ax_cut.set_ylim(-0.5, max_units + 0.5)
    ax_cut.set_ylabel("chosen cut k (units on the edge)")
    ax_bw.set_title("uplink bandwidth and the cut chosen for each task", loc="left", fontsize=10)

    # bottom: predicted (hollow) and measured (filled) total, joined by a line: the error
    predicted = [r.get("predicted_total_ms") for r in rows]
    measured = [r.get("measured_total_ms") for r in rows]
    for t, p, m in zip(times, predicted, measured):
        if p is not None and m is not None:
            ax_lat.plot([t, t], [p, m], color="#999999", linewidth=1, zorder=1)
    for model in models:
        colour, marker = style[model]
        mine = [(t, r) for t, r in zip(times, rows) if r["model"] == model]
        pts = [(t, r["predicted_total_ms"]) for t, r in mine if r.get("predicted_total_ms") is not None]
        if pts:
            ax_lat.scatter(*zip(*pts), facecolor="none", edgecolor=colour, marker=marker, s=44,
                           linewidth=1.3, zorder=2)
        pts = [(t, r["measured_total_ms"]) for t, r in mine if r.get("measured_total_ms") is not None]
        if pts:
            ax_lat.scatter(*zip(*pts), color=colour, marker=marker, s=30, zorder=3)
    fell_back = [(t, r["measured_total_ms"]) for t, r in zip(times, rows)
                 if r.get("fallback") and r.get("measured_total_ms") is not None]
    if fell_back:
        ax_lat.scatter(*zip(*fell_back), facecolor="none", edgecolor=FALLBACK_COLOUR, s=180,
                       linewidth=2, zorder=4)
        for t, m in fell_back:
            ax_lat.annotate("fallback", (t, m), xytext=(0, 12), textcoords="offset points",
                            ha="center", fontsize=8, color=FALLBACK_COLOUR, fontweight="bold")
    _maybe_log(ax_lat, [v for v in predicted + measured if v is not None])
    if ax_lat.get_yscale() == "linear":
        ax_lat.set_ylim(bottom=0)
    ax_lat.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _fmt_ms(v)))
    ax_lat.set_ylabel("total latency per task")
    ax_lat.set_xlabel(xlabel)
    ax_lat.set_title("measured (filled) against predicted (hollow) total latency", loc="left", fontsize=10)
    for ax in (ax_bw, ax_lat):
        ax.grid(alpha=0.3)
        ax.set_axisbelow(True)

    handles = [Line2D([], [], color=style[m][0], marker=style[m][1], linestyle="", label=m)
               for m in models]
    handles += [Line2D([], [], color="black", marker="o", linestyle="", label="measured"),
                Line2D([], [], color="black", marker="o", markerfacecolor="none", linestyle="",
                       label="predicted")]
    if fell_back:
        handles.append(Line2D([], [], color=FALLBACK_COLOUR, marker="o", markerfacecolor="none",
                              markersize=11, linewidth=0, markeredgewidth=2,
                              label="ran locally (fallback)"))
    ax_bw.legend(handles=handles, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=len(handles),
                 fontsize=9, frameon=False, borderaxespad=0.1, handlelength=1.0, columnspacing=1.0)

    ratios = [m / p for p, m in zip(predicted, measured) if p and m is not None]
    error = (f"median |measured / predicted - 1| = {100 * _median([abs(x - 1) for x in ratios]):.0f}%"
             if ratios else "no task measured")
    fig.suptitle(f"{len(rows)} tasks ({', '.join(models)}): {error}; "
                 f"{len(fell_back)} fell back to local", fontsize=11)
    return _save(fig, path)


# ----------------------------------------------------------------------------- helpers

def _fit_lines(fig: Figure, lines: list[str], fontsize: float) -> str:
    """The lines of a title, each wrapped to the figure's width so that none is clipped (a
    character is taken as 0.6 em wide, a little more than DejaVu Sans' average)."""
    import textwrap
    width = max(20, int(fig.get_figwidth() * 72 / (0.6 * fontsize)))
    return "\n".join(textwrap.fill(line, width) for line in lines)


def model_style(model: str, palette: list[str], markers: list[str], model_order: tuple[str, ...] = ()) -> tuple[str, str]:
    """A colour and marker per model name, the same in every run and every report: the models of
    `model_order` (the caller's list of every model) by their place in it, any other by a hash of
    its name."""
    import zlib

    i = model_order.index(model) if model in model_order else zlib.crc32(model.encode())
    return palette[i % len(palette)], markers[i % len(markers)]


def _maybe_log(ax, values) -> None:
    positive = [v for v in values if v and v > 0]
    if positive and max(positive) / min(positive) > LOG_SCALE_RATIO:
        ax.set_yscale("log")
        ax.set_ylim(min(positive) / 2, max(positive) * 1.6)
        if max(positive) / min(positive) < 1000:   # few decades: label 1, 2, 5 within each
            ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1, 2, 5)))


def _cut_words(k: int, n: int, layer: str) -> str:
    if k == 0:
        return "send the input, all on the cloud"
    if k == n:
        return "all on the edge"
    return f"after {layer}"


def _legend_above(ax) -> None:
    """The legend above the panel's top right corner, beside its title, so it hides no bar."""
    ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=4, fontsize=9, frameon=False,
              borderaxespad=0.1, handlelength=1.2, columnspacing=1.2)


def _fmt_ms(ms: float) -> str:
    if ms >= 1000:
        return f"{ms / 1000:.3g} s"
    if ms >= 1 or ms == 0:
        return f"{ms:.3g} ms"
    return f"{ms * 1000:.3g} µs"


def _fmt_bytes(n: float) -> str:
    for unit, size in (("MB", 1e6), ("KB", 1e3)):   # 1 MB = 10^6 bytes, as everywhere here
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.3g} B"


def _median(values: list[float]) -> float:
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def _save(fig: Figure, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path

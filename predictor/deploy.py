"""What deployment.py does: profile this machine, refit the predictors, show the cut table."""
from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

from models import DAG_MODEL_NAMES, MODEL_NAMES
from net.wire.codecs import ALL_CODECS
from predictor.codec_profile import write_codec_table
from predictor.energy import OBJECTIVES, EdgePower
from predictor.planner import LATENCY, Link, Objective, Plan, Planner
from predictor.profiler import FULL, QUICK, profile_role
from predictor.regression import CONFIG_DIR, DATASET_DIR, LatencyPredictor, fit_role, user_profile_dir
from utils.provenance import cpu_model, provenance

# The edge is the weak device, at 1 thread (its profile and the edge scripts); the cloud uses every core.
DEFAULT_THREADS = {"edge": 1, "cloud": os.cpu_count() or 1}


def profile_and_fit(role: str, threads: int | None = None, quick: bool = False,
                    dataset_dir: Path | None = None, config_dir: Path | None = None,
                    overwrite_shipped: bool = False) -> dict:
    """Profile this machine as `role` and fit its predictors. They go to this machine's profile
    folder (regression.user_profile_dir(), where LatencyPredictor.load looks first), or with
    overwrite_shipped over the shipped ones in predictor/."""
    if overwrite_shipped:
        dataset_dir, config_dir = dataset_dir or DATASET_DIR, config_dir or CONFIG_DIR
    else:
        dataset_dir = dataset_dir or user_profile_dir() / "dataset"
        config_dir = config_dir or user_profile_dir() / "config"
    threads = threads or DEFAULT_THREADS[role]
    settings = QUICK if quick else FULL
    started = time.perf_counter()
    profile_role(role, threads, settings, dataset_dir)
    meta = provenance(role=role, threads=threads, quick=quick)
    held_out = fit_role(role, meta, dataset_dir, config_dir)
    codec_table = write_codec_table(role, threads, config_dir, models=("alex_net", "le_net") if quick else MODEL_NAMES,
                                    dag_models=() if quick else DAG_MODEL_NAMES)
    print(f"\nheld-out accuracy of the {role} predictors ({threads} thread(s), "
          f"{'quick' if quick else 'full'} profile, {time.perf_counter() - started:.0f} s):")
    print(f"  {'kind':<10} {'rows':>5} {'MAPE %':>8} {'within ±20%':>12}")
    for kind, acc in held_out.items():
        if acc:
            print(f"  {kind:<10} {acc['n']:>5} {acc['mape_pct']:>8.1f} {acc['within_20_pct']:>11.0f}%")
    print(f"wrote {dataset_dir / role}/*_lat.csv and {config_dir / role}/ (codec costs: {codec_table.name})")
    if not overwrite_shipped and config_dir != CONFIG_DIR:
        print(f"the scripts on this machine now predict the {role} from {config_dir / role}; the shipped "
              f"predictors in {CONFIG_DIR / role} are untouched (delete {config_dir / role} to use them again)")
    return held_out


def warn_if_other_machine(predictor: LatencyPredictor) -> None:
    """One line on stderr (not a Python warning with its source line) when the predictors were
    made on another CPU; and one saying so when they are this machine's own profile rather than
    the shipped one."""
    made_on = predictor.meta.get("cpu")
    which = "shipped " if predictor.shipped else ""
    if predictor.source is not None and not predictor.shipped:
        print(f"using this machine's {predictor.role} predictors: {predictor.source}", file=sys.stderr, flush=True)
    if made_on and made_on != cpu_model():
        print(f"warning: the {which}{predictor.role} predictors were profiled on {made_on!r}, this is "
              f"{cpu_model()!r}: run `python deployment.py --role {predictor.role}` to profile "
              "this machine", file=sys.stderr, flush=True)


def decision_document(planner: Planner, link: Link, objective: Objective = LATENCY) -> dict:
    """What `deployment.py --show/--json` prints: a chain's table of cuts, or a DAG's min-cut
    partition (its prefixes are only some of its partitions)."""
    if planner.model.is_path:
        return cut_table_document(planner, link, objective)
    return dag_partition_document(planner, link, objective)


def format_decision(document: dict) -> str:
    return format_cut_table(document) if "cuts" in document else format_dag_partition(document)


def cut_table_document(planner: Planner, link: Link, objective: Objective = LATENCY) -> dict:
    """Every prefix cut k = 0..N's predicted latency (and modelled edge energy, with powers), the
    cut chosen for `objective`, and the best cut for each objective. For a chain these are all
    its partitions; for a DAG (the plot's view of it) a note says where its min cut lies."""
    model, power = planner.model, objective.power
    plans = [planner.prefix_cost(k, link, objective) for k in range(planner.num_units + 1)]
    labels = ["input", *(unit["label"] for unit in planner.unit_rows())]

    def least(key: str) -> int:  # on the exact costs, not the rows' rounded ones; ties to less edge work
        return min(range(len(plans)), key=lambda k: (getattr(plans[k], key), k))

    doc = {"model": model.name, "bandwidth_mbps": link.bandwidth_mbps, "rtt_ms": link.rtt_ms,
           "objective": objective.name, "codecs": list(ALL_CODECS),
           "codecs_considered": list(planner.codecs.allowed)}
    if not model.is_path:
        doc["unit_name"] = "node"
    doc.update(best_cut=least("energy_mj" if objective.name == "energy" else "total_ms"),
               best_latency_cut=least("total_ms"))
    if power is not None:
        doc.update(best_energy_cut=least("energy_mj"), **_power_fields(power))
    if not model.is_path:
        plan = planner.best(link, objective)
        edge_side = plan.partition.edge_nodes
        as_prefix = [k for k, p in enumerate(plans) if p.partition.edge_nodes == edge_side]
        doc["note"] = (f"min cut over all partitions: {plan.cut_point} nodes on the edge, sends "
                       f"{len(plan.crossing)} tensor(s), {plan.total_ms:.1f} ms"
                       + (f", {plan.energy_mj:.1f} mJ" if plan.energy_mj is not None else "")
                       + (f" (= k = {as_prefix[0]})" if as_prefix else " (not a prefix of the traced order)"))
    doc["cuts"] = [_cut_row(p, labels[k]) for k, p in enumerate(plans)]
    return doc


def _power_fields(power: EdgePower) -> dict:
    return {"network": power.network, "power_mw": {"compute": power.compute_mw, "idle": power.idle_mw,
                                                   "send": power.send_mw, "wait": power.wait_mw}}


def _cut_row(cut: Plan, label: str) -> dict:
    row = {"cut_point": cut.cut_point, "layer": label, "edge_ms": round(cut.edge_ms, 4),
           "transfer_ms": round(cut.transfer_ms, 4), "cloud_ms": round(cut.cloud_ms, 4),
           "total_ms": round(cut.total_ms, 4), "transfer_bytes": cut.transfer_bytes,
           "codec": cut.codec, "coded_bytes": cut.coded_bytes, "encode_ms": round(cut.encode_ms, 4),
           "decode_ms": round(cut.decode_ms, 4), "lossy": cut.lossy}
    if cut.energy_mj is not None:
        row["energy_mj"] = round(cut.energy_mj, 4)
    return row


def format_cut_table(document: dict) -> str:
    energy = "best_energy_cut" in document
    lines = [f"{document['model']} at {document['bandwidth_mbps']:g} Mbit/s, RTT "
             f"{document['rtt_ms']:g} ms (predicted; edge units 1..k, cloud units k+1..N)",
             f"{'k':>3}  {'layer after which we cut':<36} {'edge ms':>9} {'transfer ms':>12} "
             f"{'cloud ms':>9} {'total ms':>9} {'bytes':>10} {'codec':>7} {'coded':>10}"
             + (f" {'energy mJ':>10}" if energy else "")]
    for c in document["cuts"]:
        marks = [name for name, key in (("fastest", "best_latency_cut"), ("least energy", "best_energy_cut"))
                 if document.get(key) == c["cut_point"]]
        mark = f"  <- best ({', '.join(marks)})" if c["cut_point"] == document["best_cut"] else (
            f"  <- {', '.join(marks)}" if marks else "")
        lines.append(f"{c['cut_point']:>3}  {c['layer'][:36]:<36} {c['edge_ms']:>9.2f} "
                     f"{c['transfer_ms']:>12.2f} {c['cloud_ms']:>9.2f} {c['total_ms']:>9.2f} "
                     f"{c['transfer_bytes']:>10} {c['codec']:>7} {c['coded_bytes']:>10}"
                     + (f" {c['energy_mj']:>10.1f}" if energy else "") + mark)
    lines.append(f"edge ms and cloud ms exclude coding; total = edge + encode + transfer + decode + cloud; "
                 f"codecs considered: {', '.join(document['codecs_considered'])}")
    if energy:
        lines.append(_power_line(document))
    return "\n".join(lines)


def _power_line(d: dict) -> str:
    mw = d["power_mw"]
    return (f"cut chosen for {d['objective']}; energy is modelled, not measured: {d['network']} radio "
            f"{mw['send']:g} mW sending, {mw['wait']:g} mW waiting; compute {mw['compute']:g} mW, "
            f"idle {mw['idle']:g} mW (sources: predictor/power/default.json, or your --power-profile)")


def dag_partition_document(planner: Planner, link: Link, objective: Objective = LATENCY) -> dict:
    """The min-cut partition of a DAG model as data: which nodes run where, what crosses (and,
    with powers, its modelled edge energy and the partition each objective would choose)."""
    model, power = planner.model, objective.power
    plan = planner.best(link, objective)
    order = [n for n in model.nodes if n in plan.edge_nodes and n != model.input_name]  # type: ignore[attr-defined]
    doc = {"model": model.name, "bandwidth_mbps": link.bandwidth_mbps, "rtt_ms": link.rtt_ms,
           "objective": objective.name, "num_nodes": model.num_units, "edge_nodes": order,
           "crossing": [{"node": n, "shape": list(shape), "bytes": 4 * math.prod(shape)}
                        for n, shape in model.expected_tensors(plan.partition).items()],
           "transfer_bytes": plan.transfer_bytes, "edge_ms": round(plan.edge_ms, 4),
           "transfer_ms": round(plan.transfer_ms, 4), "cloud_ms": round(plan.cloud_ms, 4),
           "total_ms": round(plan.total_ms, 4), "edge_only_ms": round(planner.edge_only_ms(), 4),
           "cloud_only_ms": round(planner.cloud_only_ms(link), 4)}
    if power is not None:
        all_edge = planner.prefix_cost(model.num_units, link, objective)
        all_cloud = planner.prefix_cost(0, link, objective)
        doc.update(energy_mj=_energy_mj(plan), edge_only_energy_mj=_energy_mj(all_edge),
                   cloud_only_energy_mj=_energy_mj(all_cloud), **_power_fields(power))
        for other in OBJECTIVES:
            best = plan if other == objective.name else planner.best(link, Objective(other, power))
            doc[f"best_{other}"] = {"edge_nodes": best.cut_point, "crossing": list(best.crossing),
                                    "total_ms": round(best.total_ms, 4), "energy_mj": _energy_mj(best)}
    return doc


def _energy_mj(plan: Plan) -> float:
    """The plan's modelled energy, rounded: there is one when its objective has powers."""
    if plan.energy_mj is None:
        raise ValueError(f"no modelled energy for {plan.label}: its objective has no powers")
    return round(plan.energy_mj, 4)


def format_dag_partition(d: dict) -> str:
    edge = d["edge_nodes"]
    shown = ", ".join(edge[:12]) + (f", ... ({len(edge)} in all)" if len(edge) > 12 else "")
    lines = [f"{d['model']} at {d['bandwidth_mbps']:g} Mbit/s, RTT {d['rtt_ms']:g} ms (predicted; "
             f"min-cut partition for {d['objective']})",
             f"on the edge: {len(edge)} of {d['num_nodes']} nodes" + (f": {shown}" if edge else ""),
             "crossing: " + ("; ".join(f"{c['node']} {c['shape']} {c['bytes']} B" for c in d["crossing"])
                            if d["crossing"] else "nothing (all on the edge)"),
             f"predicted ms: edge {d['edge_ms']:.2f} + transfer {d['transfer_ms']:.2f} + cloud "
             f"{d['cloud_ms']:.2f} = {d['total_ms']:.2f}  (all on the edge {d['edge_only_ms']:.2f}, "
             f"all on the cloud {d['cloud_only_ms']:.2f})"]
    if "energy_mj" in d:
        lines.append(f"modelled edge energy: {d['energy_mj']:.1f} mJ  (all on the edge "
                     f"{d['edge_only_energy_mj']:.1f}, all on the cloud {d['cloud_only_energy_mj']:.1f})")
        for other in OBJECTIVES:
            b = d[f"best_{other}"]
            lines.append(f"best for {other}: {b['edge_nodes']} nodes on the edge, sends "
                         f"{', '.join(b['crossing']) or 'nothing'}: {b['total_ms']:.1f} ms, {b['energy_mj']:.1f} mJ")
        lines.append(_power_line(d))
    return "\n".join(lines)

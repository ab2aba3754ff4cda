"""One collaborative inference, edge side: pick the cut, run units 1..k, let the cloud finish.

Measured times mean the same everywhere: edge = units 1..k here (with the emulated slowdown);
cloud = units k+1..N as the cloud reports it; transfer = wall time from the first byte sent to
the last byte of the reply, minus the cloud's compute; total = wall time from the input tensor
being ready to the answer; overhead = total minus the three parts.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from functools import partial

import torch

from models.split import Partition, SplitModel
from net.edge.client import CloudClient, CloudUnavailable, InferReply
from net.emulation.slowdown import run_slowed
from net.wire.codecs import ImageSource, encode_all, encode_input, is_input_codec
from predictor.planner import LATENCY, Link, Objective, Planner
from utils.classes import top_k

CLOUD_RETRIES = 1


@dataclass
class Times:
    edge: float = 0.0
    transfer: float = 0.0
    cloud: float = 0.0
    total: float = 0.0
    encode: float = 0.0  # coding the tensors (or the image) on the edge
    decode: float = 0.0  # decoding them on the cloud


@dataclass
class EdgeReport:
    model: str
    cut_point: int
    num_units: int
    cut_layer: str
    bandwidth_mbps: float | None  # None: the cloud was unreachable before it could be measured
    rtt_ms: float
    cloud_load: float  # the cloud's load factor the decision used (1 = unloaded)
    transfer_bytes: int  # the whole request frame on the wire
    predicted_ms: Times
    measured_ms: Times
    top5: list[list]
    fallback: bool = False
    fallback_reason: str | None = None
    retries: int = 0  # requests sent again on a new connection before the cloud answered
    crossing: list[str] | None = None  # DAG models: the nodes whose outputs were sent
    overhead_ms: float = 0.0
    objective: str = "latency"  # what the cut was chosen for
    # The edge's modelled energy (mJ), when its network's powers are known: "predicted" from the
    # predicted times, "from_measured_times" from the measured ones (the powers stay modelled).
    energy_mj: dict | None = None
    codec: str = "none"  # how the crossing tensors (at cut 0 maybe the image) were coded
    coded_bytes: int = 0  # the coded payload (transfer_bytes is the whole frame)
    encode_ms: float = 0.0  # measured, on the edge
    decode_ms: float = 0.0  # measured, on the cloud
    lossy: bool = False  # the codec may change the answer
    logits: torch.Tensor | None = field(default=None, repr=False)

    def to_json_dict(self) -> dict:
        d = asdict(self)
        d.pop("logits")
        if d["crossing"] is None:  # chain models: the cut point says it all
            d.pop("crossing")
        if d["energy_mj"] is not None:
            d["energy_mj"] = {k: round(v, 4) for k, v in d["energy_mj"].items()}
        # the parts' dicts keep their four keys (edge, transfer, cloud, total); coding beside them
        d["predicted_encode_ms"], d["predicted_decode_ms"] = d["predicted_ms"]["encode"], d["predicted_ms"]["decode"]
        for key in ("predicted_ms", "measured_ms"):
            d[key] = {k: round(v, 4) for k, v in d[key].items() if k not in ("encode", "decode")}
        for key in ("overhead_ms", "encode_ms", "decode_ms", "predicted_encode_ms", "predicted_decode_ms"):
            d[key] = round(d[key], 4)
        return d


def ask_cloud(client: CloudClient, model: str, fingerprint: str, tensors: dict[str, torch.Tensor],
              cut: int | None = None, want_logits: bool = False,
              codec_specs: dict | None = None) -> tuple[InferReply | None, str | None, int]:
    """(reply, None, retries) from the cloud, or (None, why not, retries) when it is unavailable.
    A failed request is sent once more on a new connection before the edge gives up: behind a
    load balancer the new connection reaches a live backend (requests are idempotent)."""
    reason = None
    for attempt in range(1 + CLOUD_RETRIES):
        try:
            return client.infer_tensors(model, fingerprint, tensors, want_logits, cut=cut,
                                        codec_specs=codec_specs), None, attempt
        except CloudUnavailable as e:
            reason = str(e)
    return None, reason, CLOUD_RETRIES


def collaborative_inference(model: SplitModel, planner: Planner, x: torch.Tensor | None, client: CloudClient | None,
                            link: Link | None, objective: Objective = LATENCY, partition: Partition | None = None,
                            edge_slowdown: float = 1.0, want_logits: bool = False,
                            unavailable: str | None = None, source: ImageSource | None = None,
                            codec: str | None = None, slowdown_by_repeating: bool = False) -> EdgeReport:
    """Infer `x` split between this device and the cloud behind `client`, for any model.

    The plan (partition and codec) is the planner's best for `objective` on `link` (with the
    cloud's load from its last reply) among the codecs it was configured with, or its best codec
    at `partition` if given, or `codec` there when that is given too (a benchmark runs a given
    (partition, codec); an input codec only at cut 0). When the cloud is unavailable (`client` is None, `unavailable` says
    why; `link` may then be None) the edge runs everything; when it fails mid-request the edge
    finishes the rest itself. Either way the report says `fallback` with the reason. The planner
    must carry the same slowdown.

    With `source` (the image file in hand; `x` may then be None) the clock starts with the file:
    decoding and preprocessing it is edge time, and at cut 0 an input codec may send the file,
    its pixels or a JPEG of its crop instead of the float tensor.

    The edge's work is slowed `edge_slowdown` times by waiting after it, or with
    `slowdown_by_repeating` by doing it that many times (net.emulation.slowdown.run_slowed).
    """
    if codec is not None:
        if partition is None:
            raise ValueError("a codec is run at a given partition: give `partition` with `codec`")
        if is_input_codec(codec) and partition.cut_point != 0:
            raise ValueError(f"codec {codec} codes the input image: it goes with cut 0, not {partition.cut_point}")
    bandwidth_mbps = None if link is None else link.bandwidth_mbps  # None: never measured
    if client is None:
        partition = model.prefix(model.num_units)
        link = link or Link(1.0)  # everything on the edge: the link does not enter the cost
        plan = planner.cost(partition, link, objective)
    else:
        assert link is not None, "a request to the cloud needs the link it crosses"
        link = link.with_cloud_load(client.cloud_load)
        plan = planner.best(link, objective) if partition is None else planner.cost(partition, link, objective, codec)
        partition = plan.partition
    measured = Times()
    fallback_reason = unavailable if client is None else None
    transfer_bytes = retries = 0

    slowed = partial(run_slowed, slowdown=edge_slowdown, by_repeating=slowdown_by_repeating)
    t_ready = time.perf_counter()
    sent: dict[str, torch.Tensor] | None = None
    if is_input_codec(plan.codec):  # the image itself goes: coding it is the edge's whole part
        assert source is not None, "an input codec needs the image file"
        coded = slowed(partial(encode_input, plan.codec, partition.crossing[0], source, tuple(model.input_shape)))
        measured.encode = (time.perf_counter() - t_ready) * 1e3
    else:
        def edge_part() -> dict[str, torch.Tensor]:
            edge_x = source.tensor() if source is not None else x
            assert edge_x is not None, "an input tensor or an image file"
            return model.run_edge(edge_x, partition)
        sent = slowed(edge_part)
        measured.edge = (time.perf_counter() - t_ready) * 1e3
        t0 = time.perf_counter()
        coded = slowed(partial(encode_all, plan.codec if not partition.all_edge else "none", sent))
        measured.encode = (time.perf_counter() - t0) * 1e3 if plan.codec != "none" else 0.0
    logits, top5 = (sent or {}).get(model.output_key), None
    if not partition.all_edge:
        assert client is not None
        reply, fallback_reason, retries = ask_cloud(client, model.name, model.fingerprint, coded.tensors,
                                                    partition.wire_cut, want_logits, coded.codecs)
        if reply is not None:
            logits, top5, transfer_bytes = reply.logits, reply.top5, reply.transfer_bytes
            measured.transfer, measured.cloud, measured.decode = reply.transfer_ms, reply.cloud_ms, reply.decode_ms
        else:  # finish here what the cloud would have run
            t0 = time.perf_counter()
            if sent is None:
                assert source is not None
                sent = {partition.crossing[0]: source.tensor()}
            logits = slowed(partial(model.run_cloud, sent, partition))
            measured.edge += (time.perf_counter() - t0) * 1e3
    measured.total = (time.perf_counter() - t_ready) * 1e3
    if top5 is None:  # the output was computed here: the cloud replied with top5 otherwise
        assert logits is not None
        top5 = top_k(logits)
    cut_layer, crossing = model.describe(partition)
    predicted = Times(plan.edge_ms, plan.transfer_ms, plan.cloud_ms, plan.total_ms, plan.encode_ms, plan.decode_ms)
    return EdgeReport(
        model=model.name, cut_point=partition.cut_point, num_units=model.num_units, cut_layer=cut_layer,
        bandwidth_mbps=bandwidth_mbps,
        rtt_ms=link.rtt_ms, cloud_load=link.cloud_load, transfer_bytes=transfer_bytes,
        predicted_ms=predicted, measured_ms=measured, top5=top5, fallback=fallback_reason is not None,
        fallback_reason=fallback_reason, retries=retries, crossing=crossing,
        overhead_ms=measured.total - measured.edge - measured.encode - measured.transfer - measured.decode - measured.cloud,
        objective=objective.name, energy_mj=_energy(objective, plan.energy_mj, measured, link.rtt_ms),
        codec=plan.codec if not partition.all_edge else "none",
        coded_bytes=coded.coded_bytes if not partition.all_edge else 0,
        encode_ms=measured.encode, decode_ms=measured.decode,
        # `file` is exact only where both sides decode images alike (a forced `file` may not be)
        lossy=not partition.all_edge and (plan.lossy or (plan.codec == "file" and client is not None
                                                        and not client.same_image_decoder)),
        logits=logits if want_logits else None)


def _energy(objective: Objective, predicted_mj: float | None, measured: Times, rtt_ms: float) -> dict | None:
    """Predicted energy, and the same power model applied to the measured times, charged as the
    prediction charges them: the transfer less one RTT at the radio's sending power; the RTT,
    the cloud's part and any overhead at the waiting power."""
    if objective.power is None:
        return None
    sending_ms = max(0.0, measured.transfer - rtt_ms) if measured.transfer else 0.0
    waiting_ms = measured.total - measured.edge - measured.encode - sending_ms
    return {"predicted": predicted_mj,
            "from_measured_times": objective.power.energy_mj(measured.edge + measured.encode, sending_ms, waiting_ms)}

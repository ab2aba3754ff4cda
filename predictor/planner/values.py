"""The small values every planner speaks: the link a request crosses, the objective a partition is
chosen for, and the plan it answers with. Built once (from the command line, a benchmark, a
task) and passed as one argument; each checks itself when made, so nothing downstream has to.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from models.split import Partition
from predictor.energy import OBJECTIVES, EdgePower

BITS_PER_BYTE = 8
# Mbit/s is 10^6 bit/s; 1 ms = 1e-3 s: ms = bytes * 8 / (mbps * 1e6) * 1e3 = bytes * 8e-3 / mbps.
MS_PER_BYTE_AT_1_MBPS = BITS_PER_BYTE * 1e-3


def send_ms(nbytes: int, bandwidth_mbps: float) -> float:
    """Time to push `nbytes` through an uplink of `bandwidth_mbps` (no RTT)."""
    return nbytes * MS_PER_BYTE_AT_1_MBPS / bandwidth_mbps


@dataclass(frozen=True)
class Link:
    """The uplink a request crosses and the cloud behind it.

    bandwidth_mbps: uplink in Mbit/s; rtt_ms: paid once by a request that sends anything;
    cloud_load: how much slower than unloaded the cloud now computes (1 = idle), as it reports.
    """
    bandwidth_mbps: float
    rtt_ms: float = 0.0
    cloud_load: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.bandwidth_mbps) and self.bandwidth_mbps > 0):
            raise ValueError(f"bandwidth must be a positive number of Mbit/s, got {self.bandwidth_mbps}")
        if not (math.isfinite(self.rtt_ms) and self.rtt_ms >= 0):
            raise ValueError(f"RTT must be >= 0 ms, got {self.rtt_ms}")
        if not (math.isfinite(self.cloud_load) and self.cloud_load > 0):
            raise ValueError(f"the cloud's load factor must be > 0, got {self.cloud_load}")

    def with_cloud_load(self, cloud_load: float) -> Link:
        return replace(self, cloud_load=cloud_load)


@dataclass(frozen=True)
class Objective:
    """What a partition is chosen for: "latency" (cost in ms) or "energy" (the edge's modelled
    mJ, which needs its powers). `power`, when given, also puts energy in every plan."""
    name: str = "latency"
    power: EdgePower | None = None

    def __post_init__(self) -> None:
        if self.name not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {self.name!r}")
        if self.name == "energy" and self.power is None:
            raise ValueError("the energy objective needs the edge's power figures (an EdgePower)")

    def weights(self) -> tuple[float, float, float]:
        """Cost per ms of edge compute, of sending, of waiting (RTT + cloud): 1, 1, 1 for
        latency; the edge's powers for energy (mJ per ms)."""
        if self.name == "energy":
            assert self.power is not None  # checked when made
            return self.power.weights()
        return 1.0, 1.0, 1.0

    def energy_mj(self, edge_ms: float, sending_ms: float, waiting_ms: float) -> float | None:
        return None if self.power is None else self.power.energy_mj(edge_ms, sending_ms, waiting_ms)


LATENCY = Objective()


@dataclass(frozen=True)
class Plan:
    """A partition and its predicted cost on a link: what every planner answers."""
    partition: Partition
    label: str              # the cut's human label ("MaxPool2d (features.2)", "sends add_3")
    edge_ms: float
    transfer_ms: float      # sending + the RTT, when anything is sent
    cloud_ms: float         # scaled by the cloud's load
    transfer_bytes: int     # the crossing tensors' bytes as float32 (uncoded)
    energy_mj: float | None = None  # the edge's modelled energy, when the objective has powers
    codec: str = "none"     # how the crossing tensors (or, at cut 0, the input image) are coded
    coded_bytes: int = 0    # the coded payload: what the link carries
    encode_ms: float = 0.0  # on the edge (slowed like its compute)
    decode_ms: float = 0.0  # on the cloud (scaled by its load)
    lossy: bool = False     # whether the codec changes the answer

    @property
    def total_ms(self) -> float:
        return self.edge_ms + self.encode_ms + self.transfer_ms + self.decode_ms + self.cloud_ms

    @property
    def cut_point(self) -> int:
        return self.partition.cut_point

    @property
    def edge_nodes(self) -> frozenset[str]:
        return self.partition.edge_nodes

    @property
    def crossing(self) -> tuple[str, ...]:
        return self.partition.crossing

    def as_dict(self) -> dict:
        """The plan as a table row (cut_point, layer, the parts in ms, bytes, energy)."""
        d = asdict(self)
        d.pop("partition")
        return {"cut_point": self.cut_point, "layer": d.pop("label"), **d, "total_ms": self.total_ms}


@dataclass(frozen=True)
class Coding:
    """A codec's part of a plan: its name, the coded bytes, encode (edge) and decode (cloud) ms."""
    codec: str = "none"
    coded_bytes: int | None = None  # None: the tensors' own bytes (no codec)
    encode_ms: float = 0.0
    decode_ms: float = 0.0
    lossy: bool = False


NO_CODING = Coding()


def plan_for(partition: Partition, label: str, edge_ms: float, nbytes: int, cloud_ms: float,
             link: Link, objective: Objective, coding: Coding = NO_CODING) -> Plan:
    """The cost of a partition from its parts: nothing sent (all on the edge) pays no transfer,
    no RTT and no cloud; otherwise encode + coded bytes / bandwidth + RTT + decode, and the cloud
    (its decoding included) scaled by its load. Energy weighs encoding as edge compute and
    decoding as waiting."""
    if partition.all_edge:
        return Plan(partition, label, edge_ms, 0.0, 0.0, 0, objective.energy_mj(edge_ms, 0.0, 0.0))
    coded = nbytes if coding.coded_bytes is None else coding.coded_bytes
    sending_ms = send_ms(coded, link.bandwidth_mbps)
    cloud_ms = link.cloud_load * cloud_ms
    decode_ms = link.cloud_load * coding.decode_ms
    energy = objective.energy_mj(edge_ms + coding.encode_ms, sending_ms, link.rtt_ms + cloud_ms + decode_ms)
    return Plan(partition, label, edge_ms, sending_ms + link.rtt_ms, cloud_ms, nbytes, energy,
                coding.codec, coded, coding.encode_ms, decode_ms, coding.lossy)

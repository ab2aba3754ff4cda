"""The planner interface: the predicted cost of any partition of a model, and the best one, on
a link and for an objective. The chain scan (planner/chain.py) and the DAG minimum cut
(planner/dag.py) stand behind it; callers never need to know which."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from models.split import Partition, SplitModel
from predictor.planner.codec_costs import CodecCosts, ImageInfo
from predictor.planner.values import LATENCY, Link, Objective, Plan


class Planner(ABC):
    model: SplitModel
    codecs: CodecCosts  # the codecs plans may use, and what each costs

    @property
    def num_units(self) -> int:
        return self.model.num_units

    @abstractmethod
    def cost(self, partition: Partition, link: Link, objective: Objective = LATENCY,
             codec: str | None = None) -> Plan:
        """The predicted cost of `partition` (a chain: its cut point; a DAG: its edge nodes),
        its tensors coded with `codec`, or with the best of the allowed codecs when None."""

    @abstractmethod
    def configure_codecs(self, allowed: Sequence[str], image: ImageInfo | None = None,
                         accuracy_budget: float = 0.0) -> None:
        """The codecs plans may use from now on (predictor.planner.codec_costs.allowed_codecs),
        the image in hand, if any (input codecs need it), and the top-1 points a lossy codec may
        lose where several are allowed. Initially only `none`."""

    @abstractmethod
    def best(self, link: Link, objective: Objective = LATENCY) -> Plan:
        """The partition of least cost for `objective`; ties go to less work on the edge."""

    @abstractmethod
    def edge_only_ms(self) -> float:
        """Predicted latency with everything on the edge."""

    @abstractmethod
    def unit_rows(self) -> list[dict]:
        """Per unit 1..N in execution order: label, predicted edge and cloud ms, output bytes
        (the unit's real output, also for unit N, whose output is never sent)."""

    def has_image_size(self, codec: str) -> bool:
        """Whether the image in hand was coded with input codec `codec` (its size is known)."""
        image = self.codecs.image
        return image is not None and codec in image.coded_bytes

    def prefix_cost(self, k: int, link: Link, objective: Objective = LATENCY, codec: str | None = None) -> Plan:
        """The cost of running the first k units in execution order on the edge (its tensor
        coded with `codec`, or the best allowed codec)."""
        return self.cost(self.model.prefix(k), link, objective, codec)

    def cloud_only_ms(self, link: Link) -> float:
        """Predicted latency with everything on the cloud, the input sent as float32 (codec none)."""
        return self.cost(self.model.prefix(0), link, LATENCY, "none").total_ms

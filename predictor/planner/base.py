"""The planner interface: the predicted cost of any partition of a model, and the best one, on
a link and for an objective. The chain scan (planner/chain.py) and the DAG minimum cut
(planner/dag.py) stand behind it; callers never need to know which."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING

from models.split import Partition, SplitModel
from predictor.planner.codec_costs import CodecCosts, ImageInfo, allowed_codecs
from predictor.planner.values import LATENCY, Link, Objective, Plan

if TYPE_CHECKING:
    from net.wire.codecs import ImageSource


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

    def use_codecs(self, codec: str, accuracy_budget: float = 0.0, source: ImageSource | None = None,
                   same_image_decoder: bool = True) -> None:
        """configure_codecs from a request's terms: `codec` (auto, none or a name), the budget, and
        the image in hand, if any (its input codecs as this model's input takes them; `file` only
        where both sides decode images alike)."""
        image_codecs = source.input_codecs(tuple(self.model.input_shape)) if source is not None else ()
        allowed = allowed_codecs(codec, accuracy_budget, source is not None, same_image_decoder, image_codecs)
        self.configure_codecs(allowed, ImageInfo.of(source, allowed) if source is not None else None, accuracy_budget)

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

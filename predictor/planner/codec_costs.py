"""What each codec costs a plan: coded bytes, encode ms on the edge, decode ms on the cloud.

Learned at deployment (predictor/codec_profile.py) and stored per role as JSON beside the latency
predictors (predictor/config/<role>/codecs.json): encode/decode ms per byte of each tensor codec,
the coded-size ratio of every unit's output of every chain model under each codec (from real
activations of the sample photos), and the image costs of the input codecs. The edge's table
gives encode and image times, the cloud's decode times. Input codecs' sizes come from the actual
image at decision time (`ImageInfo`).
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from net.wire import codecs as wire
from predictor.planner.values import NO_CODING, Coding
from predictor.regression import CONFIG_DIR, user_profile_dir

TABLE_FILE = "codecs.json"
BASELINE_CODEC = "jpeg90"  # what a real application uploads: the crop as a JPEG at quality 90, cut 0
# The lossy codecs' measured accuracy loss per model and cut (predictor/codec_accuracy.py).
ACCURACY_FILE = CONFIG_DIR / "codec_accuracy.json"
# Without a measured ratio (a model or node not in the table): what a codec surely achieves.
# zstd may achieve nothing on some tensors, so none is assumed.
DEFAULT_RATIO = {"none": 1.0, "zstd": 1.0, "fp16": 0.5, "int8": 0.25}


class CodecTableError(ValueError):
    pass


def load_accuracy(model: str, path: Path = ACCURACY_FILE) -> tuple[dict[str, list[float]], str | None]:
    """`model`'s figures, {lossy codec: [top-1 points lost at cut k]} (input codecs: one value,
    cut 0; {} when not measured), and the fingerprint of the weights they were measured on (None:
    not recorded)."""
    try:
        doc = json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        doc = {}
    models = doc.get("models") if isinstance(doc, dict) else None
    measured = doc.get("measured") if isinstance(doc, dict) else None
    figures = models.get(model) if isinstance(models, dict) else None
    entry = measured.get(model) if isinstance(measured, dict) else None
    return (figures if isinstance(figures, dict) else {},
            entry.get("fingerprint") if isinstance(entry, dict) else None)


class CodecTable:
    """One role's measured codec costs (see the module docstring for the layout)."""

    def __init__(self, doc: dict, source: Path | None = None):
        try:
            self.speed: dict[str, dict[str, float]] = {c: {k: float(v) for k, v in d.items()}
                                                       for c, d in doc["speed"].items()}
            self.image: dict[str, float] = {k: float(v) for k, v in doc["image"].items()}
            # chains: per codec, a ratio per cut; DAGs: per codec, a ratio per node name
            self.ratios: dict[str, dict[str, list[float] | dict[str, float]]] = doc.get("ratios", {})
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise CodecTableError(f"codec table {source or ''} is malformed ({type(e).__name__}: {e})") from None
        self.meta: dict = doc.get("meta", {})
        self.source = source

    @classmethod
    def load(cls, role: str, config_dir: Path | None = None) -> CodecTable | None:
        """This machine's table (its profile folder) if any, else the shipped one; None if neither."""
        dirs = [config_dir] if config_dir is not None else [user_profile_dir() / "config", CONFIG_DIR]
        for folder in dirs:
            path = folder / role / TABLE_FILE
            if path.is_file():
                try:
                    return cls(json.loads(path.read_text()), path)
                except ValueError as e:
                    raise CodecTableError(f"codec table {path} is not JSON ({e})") from None
        return None

    def encode_ms(self, codec: str, raw_bytes: int) -> float:
        s = self.speed.get(codec)
        return 0.0 if s is None else s["encode_fixed_ms"] + s["encode_ms_per_byte"] * raw_bytes

    def decode_ms(self, codec: str, raw_bytes: int) -> float:
        s = self.speed.get(codec)
        return 0.0 if s is None else s["decode_fixed_ms"] + s["decode_ms_per_byte"] * raw_bytes

    def ratio(self, model: str, codec: str, k: int | str) -> float:
        """The measured coded/raw size of cut k's tensor (a chain) or of node k's output (a DAG)."""
        values = self.ratios.get(model, {}).get(codec)
        if isinstance(values, list) and isinstance(k, int) and 0 <= k < len(values):
            return float(values[k])
        if isinstance(values, dict) and isinstance(k, str) and k in values:
            return float(values[k])
        return DEFAULT_RATIO.get(codec, 1.0)

    def has_image_costs(self, codec: str) -> bool:
        """Whether this table measured input codec `codec` (a table made before a codec existed has
        not: the planner then leaves that codec out)."""
        if codec in ("file", "pixels"):
            return True
        return f"{codec}_encode_ms" in self.image and crop_decode_key(codec) in self.image

    def prep_ms(self, pixels: int) -> float:
        """Decode an image file of `pixels` pixels, resize and crop it (not normalise)."""
        return self.image["prep_fixed_ms"] + self.image["prep_ms_per_pixel"] * pixels


def crop_decode_key(codec: str) -> str:
    """The image-costs entry for decoding a crop re-encoded by `codec` (one for every JPEG quality)."""
    return "jpeg_decode_ms" if codec in wire.JPEG_QUALITY else f"{codec}_decode_ms"


@dataclass(frozen=True)
class ImageInfo:
    """The image in hand, as the planner weighs it: its pixel count and each input codec's
    actual coded size (measured by coding it)."""
    pixels: int
    coded_bytes: dict[str, int]

    @classmethod
    def of(cls, source: wire.ImageSource, input_codecs: Sequence[str]) -> ImageInfo:
        """The sizes of the given input codecs, and of `jpeg90` always: the JPEG-upload baseline
        every comparison carries (`Planner.cost(prefix(0), link, codec=BASELINE_CODEC)`)."""
        # (no baseline where the model's preprocessing has no crop to re-encode: it takes the file only)
        baseline = {BASELINE_CODEC} if wire.split_preprocess(source.preprocess) is not None else set()
        wanted = {c for c in input_codecs if wire.is_input_codec(c)} | baseline
        return cls(source.pixels_count, {c: source.encode(c).numel() for c in sorted(wanted)})


def allowed_codecs(codec: str, accuracy_budget: float = 0.0, has_image: bool = False,
                   same_image_decoder: bool = True, image_codecs: Sequence[str] = wire.INPUT_CODECS) -> tuple[str, ...]:
    """The codecs a plan may use: `auto` weighs the exact ones (the input codecs only with an
    image, `file` only where both sides decode images alike), and under a budget > 0 also the
    lossy ones, each then admitted per cut only where its measured loss is within the budget
    (CodecCosts.configure); `none` or a codec's name is that codec alone."""
    if codec != "auto":
        return (codec,)
    allowed = ["none", "zstd"]
    takes = set(image_codecs) if has_image else set()  # image_codecs: what this model's input takes
    allowed += [c for c in ("pixels", "webp_lossless") if c in takes]
    if "file" in takes and same_image_decoder:
        allowed.append("file")
    if accuracy_budget > 0:
        allowed += ["fp16", "int8"] + [c for c in wire.JPEG_QUALITY if c in takes]
    return tuple(allowed)


class CodecCosts:
    """Each codec's Coding at each cut of one model, from the edge's and the cloud's tables."""

    def __init__(self, model: str, edge: CodecTable | None, cloud: CodecTable | None, edge_slowdown: float = 1.0,
                 accuracy: dict[str, list[float]] | None = None,
                 weights_fingerprint: Callable[[], str] | None = None):
        """accuracy: per lossy codec, the top-1 points it loses at each cut (input codecs: one
        value, cut 0), as predictor/codec_accuracy.py measures them (default: the shipped table,
        used only for the weights it was measured on: `weights_fingerprint` gives the model's,
        asked for only when a budget is set)."""
        self.model, self.edge, self.cloud, self.edge_slowdown = model, edge, cloud, edge_slowdown
        self.accuracy, self._measured_on = (accuracy, None) if accuracy is not None else load_accuracy(model)
        self._weights_fingerprint = weights_fingerprint
        self.allowed: tuple[str, ...] = ("none",)
        self.forced = False
        self.budget = 0.0
        self.image: ImageInfo | None = None

    @property
    def known(self) -> bool:
        return self.edge is not None and self.cloud is not None

    def configure(self, allowed: Sequence[str], image: ImageInfo | None = None, accuracy_budget: float = 0.0) -> None:
        """The codecs plans may use. With several, a lossy one is used at a cut only where its
        measured loss there is within `accuracy_budget` (points); one codec alone is forced and
        always used."""
        bad = [c for c in allowed if c not in wire.ALL_CODECS]
        if bad:
            raise ValueError(f"unknown codec {bad[0]!r}; valid: auto, {', '.join(wire.ALL_CODECS)}")
        edge, cloud = self.edge, self.cloud
        if edge is None or cloud is None:
            allowed = [c for c in allowed if c == "none"] or list(allowed)
        else:
            unmeasured = [c for c in allowed if wire.is_input_codec(c)
                          and not (edge.has_image_costs(c) and cloud.has_image_costs(c))]
            if unmeasured and len(allowed) == 1:
                raise ValueError(f"codec {unmeasured[0]} has no measured costs in this machine's codec table "
                                 "(made before it existed): run deployment.py --role edge|cloud again")
            allowed = [c for c in allowed if c not in unmeasured]
        if image is None:
            missing = [c for c in allowed if wire.is_input_codec(c)]
            if missing and len(missing) == len(allowed):
                raise ValueError(f"codec {missing[0]} codes an image file: give --image")
            allowed = [c for c in allowed if not wire.is_input_codec(c)]
        self.allowed, self.image = tuple(allowed), image
        self.forced, self.budget = len(self.allowed) == 1, accuracy_budget
        if accuracy_budget > 0 and self._measured_on is not None and self._weights_fingerprint is not None:
            if self._weights_fingerprint() != self._measured_on:  # other weights: other losses
                self.accuracy, self._measured_on = {}, None

    def loss_points(self, codec: str, k: int) -> float | None:
        """The measured top-1 points `codec` loses at cut k (0 for exact codecs; None: not measured)."""
        if not wire.is_lossy(codec):
            return 0.0
        values = self.accuracy.get(codec)
        return float(values[k]) if values is not None and 0 <= k < len(values) else None

    def image_edge_ms(self) -> float:
        """With an image in hand, a tensor plan first decodes and preprocesses it on the edge."""
        if self.image is None or self.edge is None:
            return 0.0
        return self.edge_slowdown * (self.edge.prep_ms(self.image.pixels) + self.edge.image["normalise_ms"])

    def codecs_at(self, k: int) -> tuple[str, ...]:
        """The allowed codecs that can code the tensors of cut k (input codecs only at cut 0; a
        lossy codec, unless forced, only where its measured loss is within the budget)."""
        def admitted(c: str) -> bool:
            loss = self.loss_points(c, k)
            return self.forced or (loss is not None and loss <= self.budget)
        return tuple(c for c in self.allowed if (k == 0 or not wire.is_input_codec(c)) and admitted(c))

    def admitted_at_every_cut(self, codec: str) -> bool:
        """Whether `codec` may code any partition's tensors: an exact codec, or the one codec
        forced, or a lossy codec whose measured loss is within the budget at every cut it was
        measured at. Conservative, for a DAG's minimum cut, which ranges over partitions that no
        one cut point names (and a codec never measured is not admitted: no DAG model's is)."""
        if not wire.is_lossy(codec) or self.forced:
            return True
        losses = self.accuracy.get(codec)
        if not losses:
            return False
        return max(float(v) for v in losses) <= self.budget

    def coding(self, codec: str, k: int, raw_bytes: int, tensors: dict[str, int] | None = None) -> Coding:
        """Codec `codec` on the tensors of cut k (raw_bytes of float32; a DAG gives its crossing
        tensors' bytes by node name, each coded at its node's measured ratio and paying the
        codec's fixed costs). For a tensor codec the image's preprocessing is not included (see
        image_edge_ms)."""
        lossy = wire.is_lossy(codec)
        if codec == "none":
            return NO_CODING
        if self.edge is None or self.cloud is None:
            return Coding(codec, raw_bytes, 0.0, 0.0, lossy)
        edge, cloud, slow = self.edge, self.cloud, self.edge_slowdown
        if wire.is_input_codec(codec):
            assert self.image is not None, "input codecs need the image"
            pixels, coded = self.image.pixels, self.image.coded_bytes[codec]
            if codec == "file":
                return Coding(codec, coded, slow * edge.image["strip_ms"],
                              cloud.prep_ms(pixels) + cloud.image["normalise_ms"], lossy)
            if codec == "pixels":
                return Coding(codec, coded, slow * edge.prep_ms(pixels), cloud.image["normalise_ms"], lossy)
            return Coding(codec, coded, slow * (edge.prep_ms(pixels) + edge.image[f"{codec}_encode_ms"]),
                          cloud.image[crop_decode_key(codec)] + cloud.image["normalise_ms"], lossy)
        if tensors is None:
            coded = max(1, math.ceil(edge.ratio(self.model, codec, k) * raw_bytes))
            return Coding(codec, coded, slow * edge.encode_ms(codec, raw_bytes), cloud.decode_ms(codec, raw_bytes), lossy)
        # Each crossing tensor is coded and decoded on its own (wire.encode_all, wire.decode), and
        # the fixed costs were fitted on one-tensor calls: each tensor pays them, not the request
        # once. So the cost is a sum over tensors, which the DAG minimum cut puts on each
        # producer's arc (DagPlanner).
        coded = sum(max(1, math.ceil(edge.ratio(self.model, codec, node) * n)) for node, n in tensors.items())
        encode_ms = slow * sum(edge.encode_ms(codec, n) for n in tensors.values())
        decode_ms = sum(cloud.decode_ms(codec, n) for n in tensors.values())
        return Coding(codec, coded, encode_ms, decode_ms, lossy)

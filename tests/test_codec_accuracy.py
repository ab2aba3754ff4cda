"""The lossy codecs' accuracy table (predictor/codec_accuracy.py): what it measures is what the
wire delivers, on small subsets of its data."""
import json

import pytest
import torch

from models import get_dnn_model
from models.fashion import batch_from_uint8
from models.weights import preprocessing
from net.wire import codecs as wire
from predictor import codec_accuracy
from utils import fashion_mnist

needs_fashion_mnist = pytest.mark.skipif(not fashion_mnist.available(),
                                         reason="Fashion-MNIST not installed (apt install dataset-fashion-mnist)")


def test_views_are_the_stated_windows_of_both_photos_each_mirrored():
    views = codec_accuracy.views()
    per_photo = sum(steps * steps for _, steps in codec_accuracy.WINDOWS)
    assert len(views) == 2 * 2 * per_photo == 108
    assert views[1].tobytes() == views[0].transpose(0).tobytes()  # the mirror follows each window


def test_photo_figures_are_disagreements_per_cut_and_per_jpeg_quality():
    model = get_dnn_model("le_net")
    images = codec_accuracy.views()[:6]
    figures = codec_accuracy.measure_photos(model, images)
    assert set(figures) == {"fp16", "int8", *wire.JPEG_QUALITY}
    assert all(len(figures[c]) == model.num_units for c in ("fp16", "int8"))  # every cut that sends
    assert all(len(figures[c]) == 1 for c in wire.JPEG_QUALITY)  # the input only
    # each figure is a share of the 6 images, in points
    assert all(round(v * 6 / 100, 6).is_integer() for values in figures.values() for v in values)


def test_int8_figure_at_a_cut_is_the_disagreement_through_the_wire_codec():
    model = get_dnn_model("le_net")
    images = codec_accuracy.views()[:4]
    prep = preprocessing("le_net")
    x = torch.stack([prep(img) for img in images])
    with torch.no_grad():
        reference = model.forward_whole(x).argmax(1)
        k = 3
        t = torch.cat([list(model.unit_outputs(x[i:i + 1]))[k - 1] for i in range(4)])
        coded = [wire.encode_all("int8", {"x": t[i:i + 1]}) for i in range(4)]
        decoded = torch.cat([wire.decode({"codecs": c.codecs}, c.tensors)["x"] for c in coded])
        answer = model.run_cloud({"x": decoded}, model.prefix(k)).argmax(1)
    expected = round(100.0 * float((answer != reference).float().mean()), 2)
    assert codec_accuracy.measure_photos(model, images)["int8"][k] == expected


@needs_fashion_mnist
def test_labelled_figures_are_accuracy_points_lost():
    model = get_dnn_model("fashion_net")
    data, labels = fashion_mnist.load("test")
    images, labels_t = batch_from_uint8(data[:50]), torch.from_numpy(labels[:50].astype("int64"))
    figures = codec_accuracy.measure_labelled(model, images, labels_t)
    assert all(len(v) == model.num_units for v in figures.values())
    with torch.no_grad():
        plain = float((model.forward_whole(images).argmax(1) == labels_t).float().mean())
        half = model.forward_whole(images.half().float()).argmax(1)  # fp16 at cut 0 is exactly this
    assert figures["fp16"][0] == round(100 * (plain - float((half == labels_t).float().mean())), 2)


def test_the_table_names_the_weights_it_was_measured_on(tmp_path, monkeypatch):
    few = codec_accuracy.views()[:3]
    monkeypatch.setattr(codec_accuracy, "views", lambda: few)
    out = tmp_path / "acc.json"
    assert codec_accuracy.main(["--models", "le_net", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    model = get_dnn_model("le_net")
    assert doc["measured"]["le_net"]["fingerprint"] == model.fingerprint
    assert doc["measured"]["le_net"]["images"] == 3
    assert len(doc["models"]["le_net"]["int8"]) == model.num_units


def test_a_codec_that_changes_nothing_costs_nothing_even_where_the_logits_overflow(monkeypatch):
    # seeded MobileNetV2's logits overflow float32 on the photos: the reference answer must be the
    # logits' argmax, not a softmax's (NaN), or every figure reads 100 points
    monkeypatch.setattr(codec_accuracy, "_roundtrip", lambda codec, t: t.clone())
    model = get_dnn_model("mobile_net")
    figures, by_confidence = codec_accuracy.measure_photos_with_confidence(model, codec_accuracy.views()[:4])
    assert all(v == 0.0 for c in ("fp16", "int8") for v in figures[c])
    assert by_confidence["views"] + by_confidence["other_views"] == 4

"""Codecs chosen with the cut: the planner's costs, and whole inferences through a real cloud on
127.0.0.1 whose answers with exact codecs equal local inference (one process, fixed threads)."""
import copy
import json
import math

import pytest
import torch

from net.cloud.server import CloudServer
from net.edge.client import CloudClient
from net.edge.runner import collaborative_inference
from net.wire import codecs as C
from predictor import LatencyPredictor, Link, planner_for
from predictor.planner import CodecTable, ImageInfo, allowed_codecs
from predictor.planner.values import send_ms


@pytest.fixture(scope="module")
def predictors():
    return LatencyPredictor.load("edge"), LatencyPredictor.load("cloud")


@pytest.fixture(scope="module")
def cloud():
    server = CloudServer("127.0.0.1", 0).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def source(china_jpg):
    return C.ImageSource.from_path(china_jpg)


def planner(model, predictors, allowed=("none",), source=None, slowdown=1.0):
    p = planner_for(model, *predictors, slowdown)
    p.configure_codecs(allowed, ImageInfo.of(source, allowed) if source is not None else None)
    return p


def test_shipped_codec_tables_load_for_both_roles(chain_models):
    for role in ("edge", "cloud"):
        table = CodecTable.load(role)
        assert table is not None and set(table.speed) == {"zstd", "fp16", "int8"}
        for name, model in chain_models.items():
            ratios = table.ratios[name]
            assert len(ratios["zstd"]) == model.num_units and all(0 < r <= 1.5 for r in ratios["zstd"])
            assert ratios["fp16"] == [0.5] * model.num_units


def test_an_input_codec_a_codec_table_never_measured_is_left_out(chain_models, predictors, source):
    """A table made by deployment.py before a codec existed lacks its image costs: auto leaves the
    codec out, and forcing it says what to do, in one line."""
    model = chain_models["alex_net"]
    p = planner(model, predictors, ("none", "zstd"), source)
    for role in ("edge", "cloud"):  # copies: the tables may be shared with other tests
        table = copy.copy(getattr(p.codecs, role))
        table.image = {k: v for k, v in table.image.items() if not k.startswith("webp_lossless")}
        setattr(p.codecs, role, table)
    auto = allowed_codecs("auto", has_image=True)
    p.configure_codecs(auto, ImageInfo.of(source, auto))
    assert p.best(Link(5.85)).codec in auto
    assert "webp_lossless" not in p.codecs.allowed and "pixels" in p.codecs.allowed
    with pytest.raises(ValueError, match="webp_lossless has no measured costs.*deployment.py --role"):
        p.configure_codecs(("webp_lossless",), ImageInfo.of(source, ("webp_lossless",)))


def test_allowed_codecs():
    assert allowed_codecs("auto") == ("none", "zstd")
    assert allowed_codecs("auto", has_image=True) == ("none", "zstd", "pixels", "webp_lossless", "file")
    # lossless WebP decodes alike everywhere; only `file` depends on the two sides' image decoders
    assert allowed_codecs("auto", has_image=True, same_image_decoder=False) == ("none", "zstd", "pixels",
                                                                                "webp_lossless")
    assert allowed_codecs("auto", 5.0, has_image=True) == ("none", "zstd", "pixels", "webp_lossless", "file",
                                                            "fp16", "int8", "jpeg75", "jpeg90", "jpeg95")
    assert allowed_codecs("auto", 5.0) == ("none", "zstd", "fp16", "int8")
    assert allowed_codecs("jpeg90") == ("jpeg90",) and allowed_codecs("none") == ("none",)
    assert all(not C.is_lossy(c) for c in allowed_codecs("auto", has_image=True))


def test_the_cost_counts_encode_coded_bytes_and_decode(chain_models, predictors, source):
    model = chain_models["alex_net"]
    p = planner(model, predictors, ("none", "zstd", "pixels", "file"), source, slowdown=10)
    link = Link(5.0, rtt_ms=20)
    plain = p.cut(3, link, codec="none")
    zstd = p.cut(3, link, codec="zstd")
    assert zstd.codec == "zstd" and not zstd.lossy and zstd.coded_bytes < plain.transfer_bytes == zstd.transfer_bytes
    assert zstd.encode_ms > 0 and zstd.decode_ms > 0
    assert zstd.transfer_ms == pytest.approx(send_ms(zstd.coded_bytes, 5.0) + 20)
    assert zstd.total_ms == pytest.approx(zstd.edge_ms + zstd.encode_ms + zstd.transfer_ms + zstd.decode_ms + zstd.cloud_ms)
    pixels = p.cut(0, link, codec="pixels")
    assert pixels.coded_bytes == 3 * 224 * 224 and pixels.edge_ms == 0 and pixels.encode_ms > 0
    file = p.cut(0, link, codec="file")
    assert file.coded_bytes == len(C.strip_metadata(source.data))


def test_best_is_the_least_over_every_cut_and_codec(chain_models, predictors, source):
    model = chain_models["alex_net"]
    allowed = ("none", "zstd", "pixels", "file")
    p = planner(model, predictors, allowed, source, slowdown=10)
    for mbps in (1.1, 5.85, 18.88, 100.0):
        link = Link(mbps)
        best = p.best(link)
        every = [p.cut(k, link, codec=c) for k in range(model.num_units) for c in allowed if k == 0 or c in ("none", "zstd")]
        every.append(p.cut(model.num_units, link))
        assert best.total_ms == pytest.approx(min(plan.total_ms for plan in every))
    # at 3G, with an image in hand, sending float32 at cut 0 is never the choice
    assert p.best(Link(1.1)).codec != "none" or p.best(Link(1.1)).cut_point == model.num_units


def test_only_none_until_configured_and_without_an_image_no_input_codec(chain_models, predictors):
    model = chain_models["alex_net"]
    p = planner_for(model, *predictors)
    assert p.best(Link(1.0)).codec == "none"
    p.configure_codecs(("none", "zstd", "pixels", "file"))  # no image: input codecs dropped
    assert {c for k in range(model.num_units) for c in p.codecs.codecs_at(k)} == {"none", "zstd"}
    with pytest.raises(ValueError, match="--image"):
        p.configure_codecs(("jpeg90",))


@pytest.mark.parametrize("name, cuts", [("alex_net", [0, 3, 8, 17]), ("le_net", [0, 4, 9]),
                                        pytest.param("mobile_net", [0, 5, 12], marks=pytest.mark.slow),
                                        pytest.param("vgg_net", [14, 40], marks=pytest.mark.slow)])
def test_exact_codecs_answer_as_local_inference(cloud, chain_models, predictors, source, name, cuts):
    model = chain_models[name]
    x = source.tensor()
    with torch.no_grad():
        local = model.forward_whole(x)
    allowed = ("none", "zstd", "pixels", "webp_lossless", "file")
    p = planner(model, predictors, allowed, source)
    with CloudClient(*cloud.address) as client:
        for k in cuts:
            for codec in ("zstd", "pixels", "webp_lossless", "file") if k == 0 else ("zstd",):
                p.configure_codecs((codec,), ImageInfo.of(source, (codec,)))
                report = collaborative_inference(model, p, None, client, Link(10.0), partition=model.prefix(k),
                                                 want_logits=True, source=source)
                assert report.codec == codec and not report.lossy and not report.fallback
                assert torch.equal(report.logits, local), (name, k, codec)
                assert 0 < report.coded_bytes < report.transfer_bytes


@pytest.mark.parametrize("mbps", [1.1, 18.88, 1000.0])
def test_auto_at_budget_0_stays_exact(cloud, chain_models, predictors, source, mbps):
    model = chain_models["alex_net"]
    with torch.no_grad():
        local = model.forward_whole(source.tensor())
    with CloudClient(*cloud.address) as client:
        client.connect()
        allowed = allowed_codecs("auto", 0.0, True, client.same_image_decoder)
        p = planner(model, predictors, allowed, source, slowdown=10)
        report = collaborative_inference(model, p, None, client, Link(mbps), want_logits=True, source=source)
    assert report.codec in C.EXACT and not report.lossy
    assert torch.equal(report.logits, local)
    d = report.to_json_dict()
    assert {"codec", "coded_bytes", "transfer_bytes", "encode_ms", "decode_ms", "lossy"} <= set(d)
    json.dumps(d)


@pytest.mark.parametrize("codec", ["fp16", "int8", "jpeg90"])
def test_a_forced_lossy_codec_is_obeyed_and_reported_lossy(cloud, chain_models, predictors, source, codec):
    model = chain_models["alex_net"]
    with torch.no_grad():
        local = model.forward_whole(source.tensor())
    p = planner(model, predictors, (codec,), source)
    with CloudClient(*cloud.address) as client:
        report = collaborative_inference(model, p, None, client, Link(10.0), want_logits=True, source=source,
                                         partition=model.prefix(0 if codec == "jpeg90" else 5))
    assert report.codec == codec and report.lossy
    assert (report.logits - local).abs().max() < 0.05 * local.abs().max()


def test_a_failed_cloud_falls_back_to_the_same_answer(chain_models, predictors, source):
    model = chain_models["le_net"]
    with torch.no_grad():
        local = model.forward_whole(source.tensor())
    p = planner(model, predictors, ("pixels",), source)
    client = CloudClient("127.0.0.1", 9, timeout_s=1.0)  # nothing listens on the discard port here
    report = collaborative_inference(model, p, None, client, Link(10.0), partition=model.prefix(0),
                                     want_logits=True, source=source)
    assert report.fallback and torch.equal(report.logits, local)


def test_a_lossy_codec_is_admitted_only_where_its_measured_loss_is_within_the_budget(chain_models, predictors):
    model = chain_models["alex_net"]
    p = planner_for(model, *predictors, 10.0)
    n = model.num_units
    p.codecs.accuracy = {"int8": [50.0] * 13 + [0.5] * (n - 13), "fp16": [0.0] * n}
    p.configure_codecs(allowed_codecs("auto", 1.0), None, 1.0)
    assert p.codecs.codecs_at(3) == ("none", "zstd", "fp16")
    assert p.codecs.codecs_at(13) == ("none", "zstd", "fp16", "int8")
    p.configure_codecs(allowed_codecs("auto", 0.25), None, 0.25)
    assert "int8" not in p.codecs.codecs_at(13)
    p.codecs.accuracy = {}  # not measured: never admitted under a budget...
    p.configure_codecs(allowed_codecs("auto", 50.0), None, 50.0)
    assert all(not C.is_lossy(c) for k in range(n) for c in p.codecs.codecs_at(k))
    p.configure_codecs(("int8",))  # ...but a forced codec is always obeyed
    assert p.best(Link(1.0)).codec in ("int8", "none") and p.codecs.codecs_at(3) == ("int8",)
    p.configure_codecs(allowed_codecs("auto", 0.0), None, 0.0)  # budget 0: exact only, whatever the table
    assert all(not C.is_lossy(c) for k in range(n) for c in p.codecs.codecs_at(k))


def test_the_shipped_accuracy_table_serves_only_the_weights_it_was_measured_on(chain_models, predictors):
    model = chain_models["alex_net"]
    p = planner_for(model, *predictors, 10.0)
    measured = p.codecs.accuracy
    assert measured and p.codecs._measured_on == model.fingerprint  # the shipped table: these seeded weights
    p.configure_codecs(allowed_codecs("auto", 5.0), None, 5.0)
    assert p.codecs.accuracy == measured and "int8" in p.codecs.codecs_at(3)
    other = planner_for(model, *predictors, 10.0)
    other.codecs._weights_fingerprint = lambda: "0" * 16  # the same model on other weights
    other.configure_codecs(allowed_codecs("auto", 5.0), None, 5.0)
    assert other.codecs.accuracy == {}
    assert all(not C.is_lossy(c) for k in range(model.num_units) for c in other.codecs.codecs_at(k))


def test_under_a_budget_the_plan_says_lossy_and_answers_within_it(cloud, chain_models, predictors, source):
    model = chain_models["alex_net"]
    p = planner_for(model, *predictors, 10.0)
    p.codecs.accuracy = {c: [0.0] * model.num_units for c in ("fp16", "int8")} | {c: [0.0] for c in C.JPEG_QUALITY}
    allowed = allowed_codecs("auto", 1.0, True, True)
    p.configure_codecs(allowed, ImageInfo.of(source, allowed), 1.0)
    with CloudClient(*cloud.address) as client:
        report = collaborative_inference(model, p, None, client, Link(1.1), source=source)
    assert report.lossy and C.is_lossy(report.codec) and not report.fallback


def test_every_comparison_carries_the_jpeg_upload_baseline(chain_models, predictors, source):
    from net.edge.tasks import summarize
    model = chain_models["alex_net"]
    p = planner(model, predictors, ("none", "zstd"), source, slowdown=10)  # ImageInfo always sizes jpeg90
    jpeg = p.cost(model.prefix(0), Link(5.85), codec="jpeg90")
    assert jpeg.codec == "jpeg90" and jpeg.lossy and jpeg.coded_bytes == source.encode("jpeg90").numel()
    row = {"model": "alex_net", "measured_total_ms": 10.0, "predicted_total_ms": 20.0, "cut_point": 3,
           "fallback": False, "predicted_edge_only_ms": 40.0, "predicted_cloud_only_ms": 80.0,
           "predicted_jpeg_upload_ms": 10.0}
    (s,) = summarize([row])
    assert s["speedup_vs_jpeg_upload"] == 0.5 and s["speedup_vs_cloud_only"] == 4.0


def test_dag_partitions_code_every_crossing_tensor_at_its_node_ratio(cloud, predictors):
    from models import get_model
    model = get_model("res_net")
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        local = model.forward_whole(x)
    p = planner_for(model, *predictors)
    p.configure_codecs(("zstd",))
    partition = model.prefix(40)
    plan = p.cost(partition, Link(10.0))
    table = p.codecs.edge
    expected = sum(max(1, math.ceil(table.ratio("res_net", "zstd", n) * model.nodes[n].out_bytes))
                   for n in partition.crossing)
    assert plan.codec == "zstd" and plan.coded_bytes == expected
    assert plan.coded_bytes < plan.transfer_bytes
    with CloudClient(*cloud.address) as client:
        report = collaborative_inference(model, p, x, client, Link(10.0), partition=partition, want_logits=True)
    assert report.codec == "zstd" and torch.equal(report.logits, local)


def test_a_forced_file_is_reported_lossy_where_the_decoders_differ(cloud, chain_models, predictors, source,
                                                                    monkeypatch):
    model = chain_models["le_net"]
    p = planner(model, predictors, ("file",), source)
    with CloudClient(*cloud.address) as client:
        client.connect()
        assert client.same_image_decoder
        assert allowed_codecs("auto", 0.0, True, client.same_image_decoder)[-1] == "file"
        monkeypatch.setattr(C, "image_decoder", lambda: "pillow 0.0; libjpeg 0")  # this edge decodes otherwise
        assert "file" not in allowed_codecs("auto", 0.0, True, client.same_image_decoder)
        report = collaborative_inference(model, p, None, client, Link(10.0), partition=model.prefix(0), source=source)
    assert report.codec == "file" and report.lossy


def test_the_runner_runs_a_given_partition_and_codec(cloud, chain_models, predictors, source):
    """collaborative_inference(..., partition=P, codec=C) runs C at P whatever the planner would pick
    there (the decision-quality benchmarks measure (partition, codec) pairs); exact ones answer
    as local inference; a codec needs its partition, an input codec cut 0."""
    model = chain_models["le_net"]
    with torch.no_grad():
        local = model.forward_whole(source.tensor())
    allowed = ("none", "zstd", "pixels", "file")
    p = planner(model, predictors, allowed, source, slowdown=2.0)
    link = Link(10.0)
    with CloudClient(*cloud.address) as client:
        for k, codec in ((4, "none"), (4, "zstd"), (0, "none"), (0, "pixels"), (0, "file")):
            report = collaborative_inference(model, p, None, client, link, partition=model.prefix(k),
                                             want_logits=True, source=source, codec=codec)
            assert (report.cut_point, report.codec, report.lossy) == (k, codec, False), (k, codec)
            assert torch.equal(report.logits, local), (k, codec)
        # the JPEG-upload baseline is not among the allowed codecs, yet it runs when asked for
        report = collaborative_inference(model, p, None, client, link, partition=model.prefix(0), source=source,
                                         codec="jpeg90")
        assert (report.codec, report.lossy) == ("jpeg90", True) and report.coded_bytes == source.encode("jpeg90").numel()
        with pytest.raises(ValueError, match="partition"):
            collaborative_inference(model, p, None, client, link, source=source, codec="zstd")
        with pytest.raises(ValueError, match="cut 0"):
            collaborative_inference(model, p, None, client, link, partition=model.prefix(3), source=source,
                                    codec="pixels")

"""The decision-quality benchmark and the paper figure run end to end on their smallest setting.
Structure only: no timing assertion (chosen/oracle is a measurement, not a property)."""
from pathlib import Path

import pytest

from benchmarks import decision_quality, paper_figure

pytestmark = pytest.mark.slow  # real processes or benchmark runs: seconds each

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_rows(path):
    """(the provenance beside the CSV as '# key: value' lines, the rows as dicts of strings); the
    CSV itself is plain: its first line is the header."""
    from utils.provenance import read_csv_rows, read_provenance
    assert not Path(path).read_text().startswith("#"), "provenance belongs beside the CSV, not in it"
    return [f"# {k}: {v}" for k, v in read_provenance(path).items()], read_csv_rows(path)


def test_decision_quality_smallest(tmp_path):
    """--codec auto (the default) at budget 0 on le_net, which takes image codecs: (cut, codec)
    candidates from the photo, the oracle over exact plans, the none plan and the jpeg90 upload
    measured in the same rounds."""
    from net.wire.codecs import EXACT
    out = tmp_path / "dq.csv"
    decision_quality.main(["--models", "le_net", "--bandwidths", "100", "--repeats", "2", "--rtt", "5",
                           "--edge-slowdown", "2", "--out", str(out)])
    meta, rows = read_rows(out)
    assert any(line.startswith("# commit:") for line in meta)
    assert any(line.startswith("# edge_slowdown: 2") for line in meta)
    assert any(line.startswith("# pinning:") for line in meta)
    assert any(line.startswith("# predictors: cloud: its own profile") for line in meta)
    assert any(line.startswith("# chosen_pred_error_median_pct:") for line in meta)
    for key in ("codec: auto", "image: china.jpg", "geomean_speedup_vs_none", "geomean_chosen_over_jpeg90",
                "worst_chosen_over_jpeg90", "lossy_top1_agree"):
        assert any(line.startswith(f"# {key}") for line in meta), key
    assert len(rows) == 1
    row = rows[0]
    assert set(decision_quality.COLUMNS) <= set(row)
    assert (row["model"], row["bandwidth"], float(row["bandwidth_mbps"])) == ("le_net", "100", 100.0)
    assert float(row["rtt_ms"]) == 5.0 and int(row["rounds"]) == 2
    assert (row["codec_mode"], float(row["accuracy_budget"])) == ("auto", 0.0)
    n = int(row["units"])
    chosen, oracle, none_plan = int(row["chosen_cut"]), int(row["oracle_cut"]), int(row["none_plan"])
    assert 0 <= chosen <= n and 0 <= oracle <= n and 0 <= none_plan <= n
    measured = {int(k) for k in row["measured_cuts"].split(";")}
    assert {0, n, chosen, oracle, none_plan} <= measured <= set(range(n + 1))
    assert int(row["measured"]) + int(row["skipped"]) == int(row["candidates"])
    for key in ("chosen_ms", "oracle_ms", "ratio", "edge_only_ms", "cloud_only_ms", "speedup_vs_edge",
                "speedup_vs_cloud", "vs_best_endpoint", "predicted_chosen_ms", "none_plan_ms", "speedup_vs_none",
                "jpeg90_ms", "chosen_over_jpeg90"):
        assert float(row[key]) > 0, key
    # the oracle and the ratio come from the same measurements: the oracle's median is the least
    assert float(row["ratio"]) >= 1.0 and float(row["oracle_ms"]) <= float(row["chosen_ms"])
    assert float(row["ratio_min"]) <= float(row["ratio_p25"]) <= float(row["ratio_p75"]) <= float(row["ratio_max"])
    assert (row["chosen_is_oracle"] == "True") == ((chosen, row["chosen_codec"]) == (oracle, row["oracle_codec"]))
    best = min(float(row["edge_only_ms"]), float(row["cloud_only_ms"]))
    assert abs(float(row["vs_best_endpoint"]) - best / float(row["chosen_ms"])) < 0.01
    assert row["best_endpoint"] in ("edge-only", "cloud-only")
    # at budget 0 the chosen and the oracle are exact; jpeg90 is beside, its ratio from the same medians
    assert row["chosen_codec"] in EXACT and row["oracle_codec"] in EXACT
    chosen_ms, jpeg90_ms = float(row["chosen_ms"]), float(row["jpeg90_ms"])
    assert float(row["chosen_over_jpeg90"]) == pytest.approx(chosen_ms / jpeg90_ms, abs=2e-3)
    assert float(row["chosen_over_jpeg90_min"]) <= float(row["chosen_over_jpeg90"]) <= float(row["chosen_over_jpeg90_max"])
    assert float(row["speedup_vs_none"]) == pytest.approx(float(row["none_plan_ms"]) / chosen_ms, abs=2e-3)
    runs, lossy_runs = int(row["runs"]), int(row["lossy_runs"])
    assert lossy_runs == 3 and int(row["answers_ok"]) == runs - lossy_runs  # jpeg90: screened once, 2 rounds
    assert 0 <= int(row["lossy_top1_agree"]) <= lossy_runs

    _, cuts = read_rows(tmp_path / "dq_cuts.csv")
    assert set(decision_quality.CUT_COLUMNS) <= set(cuts[0])
    assert len(cuts) == int(row["candidates"])
    codecs = {k: [c["codec"] for c in cuts if int(c["cut"]) == k] for k in range(n + 1)}
    assert codecs[0] == ["none", "zstd", "pixels", "webp_lossless", "file", "jpeg90"] and codecs[n] == ["none"]
    assert all(codecs[k] == ["none", "zstd"] for k in range(1, n))
    by = {(int(c["cut"]), c["codec"]): c for c in cuts}
    kept = [c for c in cuts if c["phase"] == "measured"]
    assert {int(c["cut"]) for c in kept} == measured and len(kept) == int(row["measured"])
    assert all(int(c["runs"]) == 2 for c in kept)  # every kept candidate alike
    pool = [c for c in kept if c["in_oracle_pool"] == "True"]
    assert all(c["lossy"] == "False" for c in pool) and int(row["oracle_pool"]) == len(pool)
    assert float(by[oracle, row["oracle_codec"]]["total_ms"]) == min(float(c["total_ms"]) for c in pool)
    jpeg = by[0, "jpeg90"]  # the baseline: measured, lossy, outside the oracle's pool
    assert (jpeg["phase"], jpeg["lossy"], jpeg["in_oracle_pool"]) == ("measured", "True", "False")
    assert float(jpeg["total_ms"]) == pytest.approx(jpeg90_ms, abs=0.01)
    assert 0 < int(jpeg["coded_bytes"]) < 60_000 and float(jpeg["encode_ms"]) > 0
    assert float(by[none_plan, "none"]["total_ms"]) == pytest.approx(float(row["none_plan_ms"]), abs=0.01)
    assert by[none_plan, "none"]["phase"] == "measured"
    chosen_row = by[chosen, row["chosen_codec"]]
    assert int(row["chosen_coded_bytes"]) == int(chosen_row["coded_bytes"])
    zstd = by[1, "zstd"]
    assert int(zstd["predicted_coded_bytes"]) > 0 and float(zstd["predicted_encode_ms"]) > 0
    assert float(zstd["predicted_decode_ms"]) > 0
    assert all(float(c["rtt_ms"]) == 5.0 for c in cuts)


def test_decision_quality_codec_none_is_float32_only(tmp_path):
    """--codec none: one float32 candidate per cut from the fixed input tensor, as before codecs;
    no jpeg90 baseline (no image), the chosen plan is the none plan."""
    out = tmp_path / "dq.csv"
    decision_quality.main(["--models", "le_net", "--bandwidths", "100", "--repeats", "1", "--edge-slowdown", "2",
                           "--codec", "none", "--out", str(out)])
    (row,) = read_rows(out)[1]
    n = int(row["units"])
    assert (row["codec_mode"], row["chosen_codec"], row["oracle_codec"]) == ("none", "none", "none")
    assert int(row["candidates"]) == n + 1 and int(row["none_plan"]) == int(row["chosen_cut"])
    assert float(row["speedup_vs_none"]) == 1.0 and row["jpeg90_ms"] == row["chosen_over_jpeg90"] == ""
    assert int(row["lossy_runs"]) == 0 and int(row["answers_ok"]) == int(row["runs"])
    _, cuts = read_rows(tmp_path / "dq_cuts.csv")
    assert [int(c["cut"]) for c in cuts] == list(range(n + 1)) and {c["codec"] for c in cuts} == {"none"}


def test_candidates_are_cut_codec_pairs(chain_models, china_jpg):
    """auto: every cut with each codec the planner may use there, and the jpeg90 upload outside the
    oracle's pool; under a budget the admitted lossy codecs join (jpeg90 then in the pool where
    admitted); none: one float32 candidate per cut."""
    import torch

    from benchmarks.measure import model_source, predictors
    from predictor.planner import ChainPlanner
    model = chain_models["le_net"]
    edge, cloud, _, _ = predictors(None)
    planner = ChainPlanner(model, edge, cloud, 2.0)
    n = model.num_units
    source, x = model_source(model, "auto", china_jpg)
    assert source is not None and torch.equal(x, source.tensor())
    planner.use_codecs("auto", 0.0, source, True)
    auto = decision_quality.chain_candidates(model, planner)
    assert [(c.partition.cut_point, c.codec) for c in auto if c.partition.cut_point == 0] == \
        [(0, "none"), (0, "zstd"), (0, "pixels"), (0, "webp_lossless"), (0, "file"), (0, "jpeg90")]
    assert len(auto) == 2 * n + 5 and [c.in_pool for c in auto].count(False) == 1 and not auto[-1].in_pool
    planner.use_codecs("auto", 0.0, source, False)  # the cloud decodes images otherwise: no file
    assert "file" not in {c.codec for c in decision_quality.chain_candidates(model, planner)}
    planner.codecs.accuracy = {"int8": [0.5] * n, "fp16": [5.0] * n, "jpeg90": [0.2]}
    planner.use_codecs("auto", 1.0, source, True)
    budget = decision_quality.chain_candidates(model, planner)
    assert {(c.codec, c.in_pool) for c in budget if c.partition.cut_point == 0} >= {("int8", True), ("jpeg90", True)}
    assert "fp16" not in {c.codec for c in budget} and all(c.in_pool for c in budget)
    source, _ = model_source(model, "none", china_jpg)
    planner.use_codecs("none", 0.0, source, True)
    assert source is None
    assert [(c.partition.cut_point, c.codec) for c in decision_quality.chain_candidates(model, planner)] == \
        [(k, "none") for k in range(n + 1)]
    fashion, _ = model_source(chain_models["fashion_net"], "auto", china_jpg)
    assert fashion is None  # a grey 28x28 input takes no image codec: the fixed tensor


def test_the_summary_says_whether_the_floors_hold(capsys):
    from benchmarks.measure import print_summary, summarize
    row = {"model": "le_net", "bandwidth": "3g", "ratio": 1.02, "chosen_is_oracle": False, "speedup_vs_edge": 2.0,
           "speedup_vs_cloud": 3.0, "vs_best_endpoint": 2.0, "predicted_error_pct": 5.0, "speedup_vs_none": 1.6,
           "chosen_over_jpeg90": 1.08, "codec_mode": "auto", "accuracy_budget": 1.0, "runs": 10, "lossy_runs": 4,
           "answers_ok": 6, "lossy_top1_agree": 3}
    other = row | {"bandwidth": "lte", "ratio": 1.3, "chosen_over_jpeg90": 0.9, "speedup_vs_none": 2.5}
    s = summarize([row, other], [{"phase": "skipped", "in_oracle_pool": True, "lossy": True}])
    assert s["geomean_speedup_vs_none"] == pytest.approx((1.6 * 2.5) ** 0.5, abs=1e-3)
    assert s["worst_chosen_over_jpeg90"] == 1.08 and s["worst_jpeg90_case"] == "le_net at 3g"
    assert s["answers_ok"] == "12/12" and s["lossy_top1_agree"] == "6/8"
    print_summary(s, 1.0)
    text = capsys.readouterr().out
    assert "MISSED <= 1.25" in text and "floor <= 1.05: MISSED" in text
    s = summarize([row | {"accuracy_budget": 0.0, "chosen_over_jpeg90": 1.5}], [])
    print_summary(s, 1.0)
    assert "information only: at budget 0" in capsys.readouterr().out
    s = summarize([row], [{"phase": "skipped", "in_oracle_pool": False, "lossy": True}])  # none admitted
    print_summary(s, 1.0)
    assert "information only: the accuracy tables admitted none" in capsys.readouterr().out
    s = summarize([row | {"chosen_over_jpeg90": ""}], [])  # --codec none: no baseline
    print_summary(s, 1.0)
    assert "no JPEG-upload baseline" in capsys.readouterr().out


def test_rtt_typical_is_for_the_presets_only():
    from benchmarks.measure import rtt_for
    assert (rtt_for("typical", "3g"), rtt_for("typical", "LTE"), rtt_for("typical", "wifi")) == (300.0, 70.0, 28.0)
    assert rtt_for("12.5", "100") == 12.5
    import pytest
    with pytest.raises(ValueError):
        rtt_for("typical", "100")
    with pytest.raises(SystemExit):
        decision_quality.main(["--bandwidths", "100", "--rtt", "typical"])


def test_paper_figure_from_synthetic_csv(tmp_path):
    src = tmp_path / "dq.csv"
    header = "model,bandwidth,bandwidth_mbps,units,chosen_cut,edge_only_ms,cloud_only_ms,chosen_search_ms," \
             "speedup_vs_edge,speedup_vs_cloud\n"
    src.write_text("# edge_slowdown: 10.0\n" + header +
                   "alex_net,3g,1.1,22,22,300,4400,300,1.0,14.67\n"
                   "alex_net,wifi,18.88,22,3,300,290,150,2.0,1.93\n"
                   "vgg_net,lte,5.85,53,0,3400,1200,1200,2.83,1.0\n"
                   "le_net,wifi,18.88,13,9,45,260,44,1.02,5.9\n")  # not in the figure: ignored
    out = tmp_path / "figure.png"
    assert paper_figure.main(["--csv", str(src), "--out", str(out)]) == out
    data = out.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 1000
    assert len(paper_figure.figure_groups(paper_figure.read_results(src)[1])) == 3


def test_paper_figure_with_codecs_adds_the_jpeg_upload_and_the_codec(tmp_path):
    src = tmp_path / "dqc.csv"
    src.write_text("# edge_slowdown: 10.0\n"
                   "model,bandwidth,bandwidth_mbps,units,rounds,chosen_cut,chosen_codec,edge_only_ms,cloud_only_ms,"
                   "chosen_ms,jpeg90_ms\n"
                   "efficient_net,wifi,18.88,27,5,0,webp_lossless,380,290,75,40\n"
                   "alex_net,3g,1.1,22,5,22,none,300,4400,300,160\n")
    groups = paper_figure.figure_groups(paper_figure.read_results(src)[1])
    assert [(g["codec"], g["jpeg"]) for g in groups] == [("none", 160.0), ("webp_lossless", 40.0)]
    assert paper_figure.cut_words(0, 27, "webp_lossless") == "cut 0 (cloud-only), webp_lossless"
    assert paper_figure.cut_words(22, 22, "none") == "cut 22 (edge-only)"
    out = tmp_path / "figure.png"
    assert paper_figure.main(["--csv", str(src), "--out", str(out)]) == out
    assert out.read_bytes().startswith(PNG_SIGNATURE)

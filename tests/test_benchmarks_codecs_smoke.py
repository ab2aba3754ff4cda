"""The codec bytes benchmark runs end to end on its smallest setting (structure and exact sizes,
no timing assertion)."""
import pytest

from benchmarks import codecs
from net.wire import codecs as wire
from utils.provenance import read_csv_rows, read_provenance


@pytest.mark.slow
def test_codecs_benchmark_smallest(tmp_path):
    out = tmp_path / "codecs_bytes.csv"
    codecs.main(["--models", "le_net", "fashion_net", "--repeats", "1", "--out", str(out)])
    rows = read_csv_rows(out)
    le = [r for r in rows if r["model"] == "le_net"]
    assert [int(r["cut"]) for r in le] == list(range(13))
    assert int(le[0]["pixels"]) == 3 * 224 * 224 and le[1]["pixels"] == ""
    assert int(le[0]["float32_bytes"]) == 4 * 3 * 224 * 224 and int(le[0]["fp16"]) == 2 * 3 * 224 * 224
    assert int(le[0]["int8"]) == wire.coded_size_bound("int8", [1, 3, 224, 224])[0]
    assert all(float(r["zstd_encode_ms"]) > 0 and float(r["int8_decode_ms"]) > 0 for r in le)
    fashion = [r for r in rows if r["model"] == "fashion_net"]
    assert fashion[0]["file"] == "" and fashion[0]["pixels"] == ""  # a grey input takes no image codec
    assert int(fashion[0]["zstd"]) < int(fashion[0]["float32_bytes"])  # a real image compresses
    decision = read_provenance(out)["decision_time_us"]
    assert set(decision) == {"le_net", "fashion_net"} and decision["le_net"]["auto_codecs"] == 5  # +webp_lossless

"""Codecs (net/wire/codecs.py): round trips, golden frames, the header checks made before a body is
read, bounded decoding, and hostile coded frames against a real cloud on 127.0.0.1."""
import io
import json
import socket
import struct
import zlib

import numpy as np
import pytest
import torch
import zstandard
from PIL import Image

from net.cloud.server import CloudServer
from net.edge.client import CloudClient
from net.wire import codecs as C
from net.wire.protocol import PROTOCOL_VERSION, recv_frame, send_frame
from utils.image import load_image


def relu_tensor(shape=(1, 64, 27, 27), seed=0):
    return torch.relu(torch.randn(shape, generator=torch.Generator().manual_seed(seed)))


def header_for(coded: C.Coded) -> dict:
    return {"tensors": [{"name": n, "dtype": "uint8", "shape": [t.numel()]} for n, t in coded.tensors.items()],
            "codecs": coded.codecs}


def round_trip(coded: C.Coded) -> dict[str, torch.Tensor]:
    header = header_for(coded)
    C.declared_entries(header)
    return C.decode(header, coded.tensors)


# -- round trips ---------------------------------------------------------------------------------------
def test_zstd_is_exact_and_smaller_on_relu_outputs():
    x = relu_tensor()
    coded = C.encode_all("zstd", {"x": x})
    assert torch.equal(round_trip(coded)["x"], x)
    assert coded.coded_bytes < x.numel() * 4 * 0.75


@pytest.mark.parametrize("codec, tolerance, size", [("fp16", 2e-3, lambda n, c: 2 * n),
                                                    ("int8", 0.02, lambda n, c: n + 8 * c)])
def test_lossy_tensor_codecs_are_close_and_of_their_exact_size(codec, tolerance, size):
    x = relu_tensor()
    coded = C.encode_all(codec, {"x": x})
    assert coded.coded_bytes == size(x.numel(), x.shape[1])
    assert (round_trip(coded)["x"] - x).abs().max() <= tolerance * x.abs().max()
    assert C.is_lossy(codec)


def test_int8_per_tensor_for_2d_and_a_constant_tensor():
    x = torch.randn(1, 84, generator=torch.Generator().manual_seed(3))
    assert C.encode_all("int8", {"x": x}).coded_bytes == 84 + 8
    flat = torch.full((1, 4, 2, 2), 3.0)
    assert torch.equal(round_trip(C.encode_all("int8", {"x": flat}))["x"], flat)


def test_none_sends_the_tensors_as_they_are():
    x = relu_tensor()
    coded = C.encode_all("none", {"x": x})
    assert coded.codecs == {} and coded.tensors["x"] is x and coded.coded_bytes == x.numel() * 4


@pytest.mark.parametrize("codec", ["pixels", "webp_lossless", "file"])
def test_exact_input_codecs_decode_to_what_the_edge_computes(china_jpg, codec):
    source = C.ImageSource.from_path(china_jpg)
    x = load_image(china_jpg)
    assert torch.equal(source.tensor(), x)
    coded = C.encode_input(codec, "x", source, tuple(x.shape))
    assert torch.equal(round_trip(coded)["x"], x)
    if codec == "pixels":
        assert coded.coded_bytes == 3 * 224 * 224
    if codec == "webp_lossless":  # the point of it: half of `pixels`, and a lossless WebP file
        assert coded.coded_bytes < 0.6 * 3 * 224 * 224
        assert bytes(coded.tensors["x"][:4].tolist()) == b"RIFF" and bytes(coded.tensors["x"][12:16].tolist()) == b"VP8L"


@pytest.mark.parametrize("codec", ["jpeg75", "jpeg90", "jpeg95"])
def test_jpeg_codecs_are_small_and_close(china_jpg, codec):
    source = C.ImageSource.from_path(china_jpg)
    coded = C.encode_input(codec, "x", source, (1, 3, 224, 224))
    assert 5_000 < coded.coded_bytes < 40_000
    x = load_image(china_jpg)
    assert (round_trip(coded)["x"] - x).abs().mean() < 0.1


def test_strip_metadata_drops_exif_and_comments_without_reencoding(china_jpg):
    img = Image.open(china_jpg)
    out = io.BytesIO()
    exif = Image.Exif()
    exif[0x010E] = "x" * 5000  # ImageDescription
    img.save(out, format="JPEG", exif=exif.tobytes(), comment=b"c" * 3000, quality=90)
    data = out.getvalue()
    stripped = C.strip_metadata(data)
    assert len(stripped) < len(data) - 8000
    assert b"x" * 100 not in stripped and b"c" * 100 not in stripped
    decode = lambda b: np.asarray(Image.open(io.BytesIO(b)).convert("RGB"))  # noqa: E731
    assert np.array_equal(decode(stripped), decode(data))
    assert C.strip_metadata(b"not a jpeg") == b"not a jpeg"


# -- golden frames ---------------------------------------------------------------------------------------
GOLDEN_X = torch.tensor([1.0, -2.0, 0.5, 4.0]).reshape(1, 2, 1, 2)
GOLDEN = {
    "fp16": "003c00c000380044",
    "int8": "000000c00000003fc1c0403ce1e0603cff0000ff",  # minima -2, 0.5; scales 3/255, 3.5/255; q
    "zstd": "28b52ffd20108100000000000000000000800000803fc03f40",  # zstandard 0.25, level 1
}


@pytest.mark.parametrize("codec", sorted(GOLDEN))
def test_golden_coded_frames(codec):
    a, b = socket.socketpair()
    with a, b:
        coded = C.encode_all(codec, {"x": GOLDEN_X})
        sent = send_frame(a, {"type": "infer", "codecs": coded.codecs}, coded.tensors)
        a.shutdown(socket.SHUT_WR)
        data = b.recv(1 << 16)
    payload = bytes.fromhex(GOLDEN[codec])
    header = (b'{"type":"infer","codecs":{"x":{"codec":"' + codec.encode()
              + b'","dtype":"float32","shape":[1,2,1,2]}},"tensors":[{"name":"x","dtype":"uint8","shape":['
              + str(len(payload)).encode() + b']}]}')
    assert data == struct.pack(">QI", 4 + len(header) + len(payload), len(header)) + header + payload
    assert sent == len(data)


def test_golden_pixels_frame_header(china_jpg):
    coded = C.encode_input("pixels", "x", C.ImageSource.from_path(china_jpg), (1, 3, 224, 224))
    assert json.dumps(header_for(coded), separators=(",", ":")) == (
        '{"tensors":[{"name":"x","dtype":"uint8","shape":[150528]}],'
        '"codecs":{"x":{"codec":"pixels","dtype":"float32","shape":[1,3,224,224]}}}')


# -- header checks, before the body ------------------------------------------------------------------------
def entry(nbytes, name="x"):
    return {"name": name, "dtype": "uint8", "shape": [nbytes]}


@pytest.mark.parametrize("tensors, codecs", [
    ([entry(8)], {"x": {"codec": "gzip", "dtype": "float32", "shape": [1, 2]}}),
    ([entry(8)], {"x": {"codec": "none", "dtype": "float32", "shape": [1, 2]}}),
    ([entry(8)], {"x": {"codec": "fp16", "dtype": "float64", "shape": [1, 2]}}),
    ([entry(8)], {"x": {"codec": "fp16", "dtype": "float32", "shape": [1, 3]}}),  # 6 bytes, not 8
    ([entry(8)], {"y": {"codec": "fp16", "dtype": "float32", "shape": [1, 4]}}),
    ([entry(8)], {"x": {"codec": "fp16", "dtype": "float32", "shape": [1, -4]}}),
    ([entry(8)], {"x": {"codec": "fp16", "dtype": "float32", "shape": [2**31, 2**31]}}),
    ([entry(8)], {"x": ["fp16"]}),
    ([entry(8)], ["x"]),
    ([{"name": "x", "dtype": "float32", "shape": [2]}], {"x": {"codec": "fp16", "dtype": "float32", "shape": [1, 4]}}),
    ([entry(10**6)], {"x": {"codec": "zstd", "dtype": "float32", "shape": [1, 4]}}),  # past zstd's bound
    ([entry(100)], {"x": {"codec": "pixels", "dtype": "float32", "shape": [1, 3, 224, 224]}}),
    ([entry(100)], {"x": {"codec": "file", "dtype": "float32", "shape": [1, 64, 55, 55]}}),
])
def test_declared_entries_refuse_what_the_codec_cannot_produce(tensors, codecs):
    with pytest.raises(C.CodecError):
        C.declared_entries({"tensors": tensors, "codecs": codecs})


def test_declared_entries_give_the_decoded_view():
    got = C.declared_entries({"tensors": [entry(8), {"name": "y", "dtype": "float32", "shape": [2]}],
                              "codecs": {"x": {"codec": "fp16", "dtype": "float32", "shape": [1, 4]}}})
    assert got == [{"name": "x", "dtype": "float32", "shape": [1, 4], "codec": "fp16"},
                   {"name": "y", "dtype": "float32", "shape": [2]}]


# -- bounded decoding ---------------------------------------------------------------------------------------
def zstd_spec(shape):
    return {"codec": "zstd", "dtype": "float32", "shape": list(shape)}


def decode_one(spec, payload: bytes):
    t = torch.frombuffer(bytearray(payload), dtype=torch.uint8) if payload else torch.empty(0, dtype=torch.uint8)
    header = {"tensors": [entry(len(payload))], "codecs": {"x": spec}}
    C.declared_entries(header)
    return C.decode(header, {"x": t})


@pytest.mark.parametrize("write_size", [True, False])
def test_a_zstd_bomb_is_refused_without_decompressing_it(write_size):
    bomb = zstandard.ZstdCompressor(level=3, write_content_size=write_size).compress(bytes(200 * 2**20))
    assert len(bomb) < 100_000
    with pytest.raises(C.CodecError, match="declares|expands past"):
        decode_one(zstd_spec((1, 64, 55, 55)), bomb)


def test_zstd_shorter_than_declared_or_garbage_is_refused():
    short = zstandard.ZstdCompressor(write_content_size=False).compress(bytes(100))
    with pytest.raises(C.CodecError, match="shorter"):
        decode_one(zstd_spec((1, 4, 8, 8)), short)
    with pytest.raises(C.CodecError):
        decode_one(zstd_spec((1, 4, 8, 8)), b"\x00" * 40)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height pixels, with a tiny (truncated) body."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def test_an_image_file_declaring_too_many_pixels_is_refused_from_its_header():
    spec = {"codec": "file", "dtype": "float32", "shape": [1, 3, 224, 224]}
    with pytest.raises(C.CodecError, match="over the bound"):
        decode_one(spec, png_header_only(100_000, 100_000))
    with pytest.raises(C.CodecError, match="over the bound"):
        decode_one(spec, png_header_only(1000, 1000))  # 1 Mpixel > 16 x 224 x 224


@pytest.mark.parametrize("codec, payload", [
    ("file", b"GIF89a" + bytes(100)),
    ("file", b"\xff\xd8\xff\xe0" + bytes(50)),
    ("jpeg90", png_header_only(224, 224)),
    ("webp_lossless", png_header_only(224, 224)),
    ("webp_lossless", b"RIFF" + struct.pack("<I", 100) + b"WEBPVP8L" + bytes(92)),
])
def test_image_payloads_that_are_not_what_they_claim_are_refused(codec, payload):
    with pytest.raises(C.CodecError):
        decode_one({"codec": codec, "dtype": "float32", "shape": [1, 3, 224, 224]}, payload)


@pytest.mark.parametrize("codec", ["jpeg90", "webp_lossless"])
def test_a_crop_codec_must_carry_the_crop_size(codec):
    image_format, options = C.CROP_FORMATS[codec]
    out = io.BytesIO()
    Image.new("RGB", (300, 300)).save(out, format=image_format, **options)
    with pytest.raises(C.CodecError, match="224x224"):
        decode_one({"codec": codec, "dtype": "float32", "shape": [1, 3, 224, 224]}, out.getvalue())


# -- through a real cloud ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cloud():
    server = CloudServer("127.0.0.1", 0, header_timeout_s=0.5, idle_timeout_s=2.0).start()
    yield server
    server.stop()


def send_coded(server, model, header: dict, tensors: dict, wait_close: bool = True) -> tuple[dict, bool]:
    """(reply, whether the server then closed the connection: not looked at without wait_close)."""
    with socket.create_connection(server.address, timeout=5) as sock:
        send_frame(sock, {"type": "hello", "version": PROTOCOL_VERSION})
        recv_frame(sock, idle_timeout_s=5)
        send_frame(sock, {"type": "infer", "model": model.name, "fingerprint": model.fingerprint,
                          "want_logits": False, **header}, tensors)
        reply, _ = recv_frame(sock, idle_timeout_s=5)
        if not wait_close:
            return reply, False
        sock.settimeout(3)
        try:
            closed = sock.recv(1) == b""
        except OSError:
            closed = True
        return reply, closed


def test_cloud_answers_every_exact_tensor_codec_as_local_inference(cloud, chain_models):
    model = chain_models["alex_net"]
    x = relu_tensor((1, 64, 55, 55), seed=5)  # AlexNet after its first ReLU (cut 2)
    with torch.no_grad():
        expected = model.run_cloud({"x": x}, model.prefix(2))
    with CloudClient(*cloud.address) as client:
        for codec in ("none", "zstd"):
            coded = C.encode_all(codec, {"x": x})
            reply = client.infer_tensors(model.name, model.fingerprint, coded.tensors, True, cut=2,
                                         codec_specs=coded.codecs)
            assert torch.equal(reply.logits, expected), codec
            assert reply.decode_ms >= 0


def test_cloud_refuses_a_zstd_bomb_and_closes_then_serves_others(cloud, chain_models):
    model = chain_models["alex_net"]
    bomb = zstandard.ZstdCompressor(write_content_size=False).compress(bytes(64 * 2**20))
    reply, closed = send_coded(cloud, model, {"cut": 2, "codecs": {"x": zstd_spec((1, 64, 55, 55))}},
                               {"x": torch.frombuffer(bytearray(bomb), dtype=torch.uint8)})
    assert reply["type"] == "error" and reply["code"] == "bad_codec" and closed
    test_cloud_answers_every_exact_tensor_codec_as_local_inference(cloud, chain_models)


@pytest.mark.parametrize("case", ["wrong_shape", "input_codec_past_cut_0", "huge_png", "webp_not_the_crop"])
def test_cloud_refuses_hostile_coded_headers(cloud, chain_models, case):
    model = chain_models["alex_net"]
    if case == "wrong_shape":  # decodes to a shape the model does not take at that cut
        header = {"cut": 2, "codecs": {"x": {"codec": "fp16", "dtype": "float32", "shape": [1, 64, 55, 54]}}}
        tensors = {"x": torch.zeros(2 * 64 * 55 * 54, dtype=torch.uint8)}
        code = "bad_tensor"
    elif case == "input_codec_past_cut_0":
        header = {"cut": 3, "codecs": {"x": {"codec": "file", "dtype": "float32", "shape": [1, 64, 27, 27]}}}
        tensors = {"x": torch.zeros(100, dtype=torch.uint8)}
        code = "bad_codec"
    elif case == "webp_not_the_crop":  # a lossless WebP of another size than the model's crop
        out = io.BytesIO()
        Image.new("RGB", (4000, 4000)).save(out, format="WEBP", lossless=True, method=0, quality=0)
        header = {"cut": 0, "codecs": {"x": {"codec": "webp_lossless", "dtype": "float32", "shape": [1, 3, 224, 224]}}}
        tensors = {"x": torch.frombuffer(bytearray(out.getvalue()), dtype=torch.uint8)}
        code = "bad_codec"
    else:
        png = png_header_only(50_000, 50_000)
        header = {"cut": 0, "codecs": {"x": {"codec": "file", "dtype": "float32", "shape": [1, 3, 224, 224]}}}
        tensors = {"x": torch.frombuffer(bytearray(png), dtype=torch.uint8)}
        code = "bad_codec"
    reply, _ = send_coded(cloud, model, header, tensors)
    assert reply["type"] == "error" and reply["code"] == code, reply


def test_an_older_peer_is_refused_naming_both_versions(cloud):
    with socket.create_connection(cloud.address, timeout=5) as sock:
        send_frame(sock, {"type": "hello", "version": 1})
        reply, _ = recv_frame(sock, idle_timeout_s=5)
    assert reply["code"] == "version_mismatch"
    assert "version 1" in reply["message"] and f"speaks {PROTOCOL_VERSION}" in reply["message"]


def test_hello_exchanges_the_image_decoder(cloud):
    with CloudClient(*cloud.address) as client:
        client.connect()
        assert client.cloud_image_decoder == C.image_decoder() and client.same_image_decoder


def test_coded_frames_under_a_token_are_authenticated_end_to_end(chain_models):
    model = chain_models["alex_net"]
    x = relu_tensor((1, 64, 55, 55), seed=7)
    with torch.no_grad():
        expected = model.run_cloud({"x": x}, model.prefix(2))
    server = CloudServer("127.0.0.1", 0, token=b"s3cret").start()
    try:
        with CloudClient(*server.address, token=b"s3cret") as client:
            coded = C.encode_all("zstd", {"x": x})
            reply = client.infer_tensors(model.name, model.fingerprint, coded.tensors, True, cut=2,
                                         codec_specs=coded.codecs)
        assert torch.equal(reply.logits, expected)
    finally:
        server.stop()


def test_fuzz_coded_frames(cloud, chain_models):
    """Mutated zstd, fp16, int8 and pixels frames: every one refused or answered, never a crash,
    and the cloud serves a good request after them all."""
    import random
    rng = random.Random(2026)
    model = chain_models["le_net"]
    x = relu_tensor((1, 84), seed=11)
    goods = []
    for codec in ("zstd", "fp16", "int8"):
        coded = C.encode_all(codec, {"x": x})
        goods.append(({"cut": 12, "codecs": coded.codecs}, bytes(coded.tensors["x"].numpy())))
    for _ in range(60):
        header, payload = rng.choice(goods)
        data = bytearray(payload)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        spec = dict(header["codecs"]["x"])
        if rng.random() < 0.3:  # lie about the decoded shape too
            spec["shape"] = [1, rng.choice([83, 84, 85, 10**6])]
        reply, _ = send_coded(cloud, model, {"cut": 12, "codecs": {"x": spec}},
                              {"x": torch.frombuffer(data, dtype=torch.uint8)}, wait_close=False)
        assert reply["type"] in ("result", "error")
        if reply["type"] == "error":
            assert reply["code"] in ("bad_codec", "bad_tensor"), reply
    test_cloud_answers_every_exact_tensor_codec_as_local_inference(cloud, chain_models)

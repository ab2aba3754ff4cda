"""Top-1 accuracy through the split path, on real weights and labelled data.

  python -m benchmarks.accuracy [--cuts K ...] [--limit N] [--transform MODULE:FUNCTION] [--out CSV]

fashion_net: all 10,000 Fashion-MNIST test images (Debian's dataset-fashion-mnist), each sent as
one request through a cloud on a real loopback socket at every cut of --cuts; efficient_net: the
two photos that ship with scikit-learn, at its cuts, with the top-1 class named. Every split answer
(the cloud's logits) is checked against local inference of the same image; a mismatch is counted
in `split_equals_local` and makes the run exit non-zero.

The cloud is a CloudServer in this process on 127.0.0.1 (a free port): the same code and socket
path as cloud_api.py, and the same torch build and thread count as the edge side, so the check is
bitwise (torch.equal). Each request carries one image (the protocol's tensors are batches of one);
at fashion_net's size that is ~1-2 ms a request, so the 10,000 images take seconds per cut.

--transform MODULE:FUNCTION applies a function tensor -> tensor to the edge's output at the cut
before it is sent (e.g. a lossy codec's encode+decode; `benchmarks.accuracy:fp16_roundtrip` is an
example). The answer is then checked against local inference of the same transformed tensor, and
`top1_agree_untransformed` says how often the top-1 class survived the transform.
"""
from __future__ import annotations

import argparse
import importlib
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks import RESULTS_DIR  # fresh results: runs/benchmarks/
from models import get_dnn_model, model_input
from models.fashion import batch_from_uint8
from models.weights import categories
from net.cloud.server import CloudServer
from net.edge.client import CloudClient
from utils import fashion_mnist
from utils.image import SAMPLE_IMAGES
from utils.provenance import provenance, write_csv_with_provenance

FASHION_CUTS = (0, 4, 8, 12, 16)         # input, after each conv block, before the last linear
EFFICIENT_CUTS = (0, 4, 9, 15, 19, 25)   # input, after blocks 0/5/11/15, before the classifier
COLUMNS = ["model", "data", "images", "cut_point", "cut_layer", "cut_bytes", "transform", "top1_accuracy",
           "top1_agree_untransformed", "split_equals_local", "top1_class", "top1_probability", "seconds"]

Transform = Callable[[torch.Tensor], torch.Tensor]


def fp16_roundtrip(t: torch.Tensor) -> torch.Tensor:
    """An example transform: the tensor as an fp16 codec would deliver it (half the bytes)."""
    return t.half().float()


def load_transform(spec: str) -> Transform:
    """'module:function' -> the function; ValueError with one line otherwise."""
    module_name, sep, func_name = spec.partition(":")
    if not sep or not module_name or not func_name:
        raise ValueError(f"--transform takes MODULE:FUNCTION, got {spec!r}")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot load transform {spec!r}: {e}") from None
    if not callable(func):
        raise ValueError(f"transform {spec!r} is not a function")
    return func


@torch.no_grad()
def split_run(model, client: CloudClient, x: torch.Tensor, cut: int, transform: Transform | None):
    """(cloud logits, local logits, untransformed local logits) of one image split at `cut`."""
    partition = model.prefix(cut)
    sent = model.run_edge(x, partition)
    if transform is not None:
        sent = {name: transform(t).contiguous() for name, t in sent.items()}
    reply = client.infer_tensors(model.name, model.fingerprint, sent, want_logits=True, cut=partition.wire_cut)
    # local inference: the whole model, or (with a transform) the same transformed tensors finished here
    whole = model.forward_whole(x)
    local = whole if transform is None else model.run_cloud(sent, partition)
    return reply.logits, local, whole


def cut_bytes(model, cut: int) -> int:
    """Bytes of the float32 tensors that cross at `cut`."""
    return sum(4 * math.prod(shape) for shape in model.expected_tensors(model.prefix(cut)).values())


def fashion_rows(client: CloudClient, cuts, limit: int | None, transform, transform_name: str, log) -> list[dict]:
    model = get_dnn_model("fashion_net")
    images, labels = fashion_mnist.load("test")
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    x_all, y_all = batch_from_uint8(images), torch.from_numpy(labels.astype("int64"))
    rows = []
    for cut in cuts:
        correct = agree = equal = 0
        t0 = time.perf_counter()
        for i in range(len(x_all)):
            cloud, local, whole = split_run(model, client, x_all[i:i + 1], cut, transform)
            equal += torch.equal(cloud, local)
            top1 = int(cloud.argmax())
            correct += top1 == int(y_all[i])
            agree += top1 == int(whole.argmax())
        seconds = time.perf_counter() - t0
        n = len(x_all)
        rows.append({"model": "fashion_net", "data": "fashion-mnist test", "images": n, "cut_point": cut,
                     "cut_layer": model.unit_label(cut), "cut_bytes": cut_bytes(model, cut),
                     "transform": transform_name, "top1_accuracy": round(correct / n, 4),
                     "top1_agree_untransformed": round(agree / n, 4), "split_equals_local": f"{equal}/{n}",
                     "top1_class": "", "top1_probability": "", "seconds": round(seconds, 2)})
        log(f"fashion_net cut {cut:>2} ({model.unit_label(cut)}): top-1 {correct / n:.4f} on {n} images, "
            f"split == local {equal}/{n}, {seconds:.1f} s")
    return rows


def photo_rows(client: CloudClient, cuts, transform, transform_name: str, log) -> list[dict]:
    model = get_dnn_model("efficient_net")
    names = categories("efficient_net") or []  # real weights: ImageNet's 1000 names
    rows = []
    for photo in SAMPLE_IMAGES:
        x = model_input("efficient_net", None, photo)
        for cut in cuts:
            t0 = time.perf_counter()
            cloud, local, whole = split_run(model, client, x, cut, transform)
            seconds = time.perf_counter() - t0
            probabilities = torch.softmax(cloud.reshape(-1).double(), 0)
            top1 = int(probabilities.argmax())
            rows.append({"model": "efficient_net", "data": photo, "images": 1, "cut_point": cut,
                         "cut_layer": model.unit_label(cut), "cut_bytes": cut_bytes(model, cut),
                         "transform": transform_name, "top1_accuracy": "",
                         "top1_agree_untransformed": int(top1 == int(whole.argmax())),
                         "split_equals_local": f"{int(torch.equal(cloud, local))}/1", "top1_class": names[top1],
                         "top1_probability": round(float(probabilities[top1]), 4), "seconds": round(seconds, 3)})
            log(f"efficient_net {photo} cut {cut:>2}: top-1 {names[top1]!r} p={float(probabilities[top1]):.4f}")
    return rows


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cuts", type=int, nargs="+", default=list(FASHION_CUTS),
                   help=f"fashion_net's cuts (default {' '.join(map(str, FASHION_CUTS))})")
    p.add_argument("--photo-cuts", type=int, nargs="+", default=list(EFFICIENT_CUTS),
                   help=f"efficient_net's cuts (default {' '.join(map(str, EFFICIENT_CUTS))})")
    p.add_argument("--limit", type=int, help="only the first N test images (default all 10,000)")
    p.add_argument("--transform", help="MODULE:FUNCTION applied to the tensor at the cut before sending, "
                                       "e.g. benchmarks.accuracy:fp16_roundtrip (default none)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "accuracy.csv", help="CSV to write")
    args = p.parse_args(argv)
    try:
        transform = load_transform(args.transform) if args.transform else None
        fashion_mnist.load("test")
    except (ValueError, fashion_mnist.DatasetMissing) as e:
        p.exit(2, f"error: {e}\n")
    if args.limit is not None and args.limit < 1:
        p.error("--limit must be >= 1")
    for name, cuts, n in (("fashion_net", args.cuts, 17), ("efficient_net", args.photo_cuts, 26)):
        if not all(0 <= k < n for k in cuts):
            p.error(f"{name}'s cuts go through the cloud: 0..{n - 1}")
    torch.set_num_threads(args.threads)
    transform_name = args.transform or "none"
    server = CloudServer("127.0.0.1", 0).start()
    try:
        with CloudClient(*server.address) as client:
            rows = fashion_rows(client, args.cuts, args.limit, transform, transform_name, print)
            rows += photo_rows(client, args.photo_cuts, transform, transform_name, print)
    finally:
        server.stop()
    meta = provenance(threads=args.threads, transform=transform_name, limit=args.limit,
                      cloud="CloudServer in-process on 127.0.0.1, one image a request",
                      data=str(fashion_mnist.data_dir()))
    write_csv_with_provenance(args.out, rows, COLUMNS, meta)
    print(f"wrote {args.out}")
    mismatches = [r for r in rows if r["split_equals_local"].split("/")[0] != r["split_equals_local"].split("/")[1]]
    if mismatches:
        print(f"error: {len(mismatches)} row(s) where a split answer differs from local inference", file=sys.stderr)
        raise SystemExit(1)
    return rows


if __name__ == "__main__":
    main()

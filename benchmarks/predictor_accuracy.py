"""Accuracy of the per-kind latency predictors, in sample and out of sample.

  python -m benchmarks.predictor_accuracy [--role edge|cloud] [--folds 5] [--repeats N] [--no-models]

Three evaluations, each row labelled in the `evaluation` column:
- "5-fold (random rows)": for each layer kind, 5-fold cross-validation over the profile rows
  (predictor/dataset/<role>/): MAPE and share within +-10% and +-20%, for our regression
  (LinearRegression, non-negative, weighted by 1/y^2) and, on the same folds, a random forest and
  an unweighted linear fit. Close to in-sample: many rows share their feature vector with another
  row (the same layer profiled again), so a random fold rarely tests a layer it has not seen.
- "leave-one-model-out": the profile's rows name the model they came from (`source`, e.g.
  alex_net@160); for each model (`held_out_model`) each kind is fitted without that model's rows
  (its width variants, e.g. mobile_net_x1.4, go with it) and tested on them. A kind that only
  that model has cannot be fitted without it: its row says so (n_train 0).
- whole models (a second CSV, NAME_models.csv): each model's prefixes 1..N measured in real passes
  (the thread count the role's profile was made with, a cache flush before each pass, median of
  --repeats), predicted by the fit on every row (in sample) and by the fit without that model
  (held out), prefix by prefix; plus torchvision's MNASNet 1.0 (`mnas_net`, seeded weights) as a
  chain, an architecture the profile never saw, built only of kinds it knows.
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
import torch
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LinearRegression

from benchmarks import RESULTS_DIR  # fresh results: runs/benchmarks/ (benchmarks/__init__.py)
from benchmarks.model_latency import measure_prefixes_ms, predicted_prefixes_ms
from models import ALL_MODEL_NAMES, get_model
from models.chain import ChainModel, leaves
from predictor import LatencyPredictor, planner_for
from predictor.features import FEATURES
from predictor.profiler import CacheFlusher
from predictor.regression import DATASET_DIR, accuracy, fit_kind, read_dataset
from utils.provenance import provenance, write_csv_with_provenance

REGRESSORS = {
    "linear_weighted (ours)": lambda: (LinearRegression(positive=True), True),
    "linear_unweighted": lambda: (LinearRegression(positive=True), False),
    "random_forest": lambda: (RandomForestRegressor(n_estimators=100, random_state=0), False),
}


def cross_validate(x: np.ndarray, y: np.ndarray, make, folds: int) -> dict:
    order = np.random.default_rng(0).permutation(len(y))
    predicted = np.empty_like(y)
    for fold in np.array_split(order, folds):
        train = np.setdiff1d(order, fold)
        model, weighted = make()
        model.fit(x[train], y[train], sample_weight=1 / y[train] ** 2 if weighted else None)
        predicted[fold] = model.predict(x[fold])
    return accuracy(np.maximum(predicted, 0.0), y)


NEVER_PROFILED = "mnas_net"
MODEL_COLUMNS = ["role", "threads", "model", "evaluation", "held_out_model", "prefix_units", "layer", "measured_ms",
                 "predicted_in_sample_ms", "predicted_held_out_ms", "error_in_sample_pct", "error_held_out_pct"]


def family(source: str) -> str:
    """The model a profile row came from: its `source` before '@' ("mobile_net_x1.4@160" ->
    "mobile_net_x1.4")."""
    return str(source).split("@")[0]


def belongs(source: str, model: str) -> bool:
    """Whether a profile row is `model`'s own, a width variant of it included."""
    f = family(source)
    return f == model or f.startswith(f"{model}_x")


def profile_models(role: str, dataset_dir: Path) -> list[str]:
    """The models the role's profile has rows of (width variants and single linear layers aside)."""
    seen: set[str] = set()
    for kind in FEATURES:
        df = read_dataset(dataset_dir / role / f"{kind}_lat.csv")
        seen |= {family(s) for s in df["source"]}
    return [m for m in ALL_MODEL_NAMES if m in seen]


def fit_without(role: str, dataset_dir: Path, model: str | None, meta: dict) -> tuple[LatencyPredictor, list[str]]:
    """Per-kind fits on the profile without `model`'s rows (all rows when None); the kinds left
    with no rows are missing from the predictor and listed."""
    kinds, missing = {}, []
    for kind in FEATURES:
        df = read_dataset(dataset_dir / role / f"{kind}_lat.csv")
        if model is not None:
            df = df[~df["source"].map(lambda s: belongs(s, model))]
        if df.empty:
            missing.append(kind)
            continue
        kinds[kind] = fit_kind(df, kind)[1]
    return LatencyPredictor(role, kinds, meta), missing


def leave_one_model_out(role: str, dataset_dir: Path, models: list[str]) -> list[dict]:
    """Per held-out model and kind: our regression fitted on the other models' rows, tested on
    that model's rows."""
    rows = []
    for kind, names in FEATURES.items():
        df = read_dataset(dataset_dir / role / f"{kind}_lat.csv")
        for model in models:
            mine = df["source"].map(lambda s, m=model: belongs(s, m))
            test, train = df[mine], df[~mine]
            if test.empty:
                continue
            row = {"role": role, "evaluation": "leave-one-model-out", "held_out_model": model, "kind": kind,
                   "regressor": "linear_weighted (ours)", "n_train": len(train)}
            if train.empty:
                row.update({"mape_pct": "", "within_10_pct": "", "within_20_pct": "", "n": len(test)})
            else:
                fitted = fit_kind(train, kind)[1]
                x = test[list(names)].to_numpy(float)
                predicted = np.array([fitted.predict_ms(dict(zip(names, v))) for v in x])
                row.update(accuracy(predicted, test["latency_ms"].to_numpy(float)))
            rows.append(row)
    return rows


def in_sample_sums(role: str, dataset_dir: Path, models: list[str]) -> list[dict]:
    """The shipped fit (every row) summed over its own profile rows against their measured times
    summed (`sum_ratio`, predicted / measured): per kind over all its rows, and per model over
    every op of its pass at its own input size (224 px where it was profiled at several). A
    regression can have a small median error and still miss a model's total, where its large ops
    are."""
    rows: list[dict] = []
    per_source: dict[str, list[float]] = {}  # source -> [predicted ms, measured ms], summed over its ops
    for kind, names in FEATURES.items():
        df = read_dataset(dataset_dir / role / f"{kind}_lat.csv")
        fitted = fit_kind(df, kind)[1]
        predicted = [fitted.predict_ms(dict(zip(names, v))) for v in df[list(names)].to_numpy(float)]
        measured = df["latency_ms"].to_numpy(float)
        rows.append({"role": role, "evaluation": "in-sample sum", "held_out_model": "", "kind": kind,
                     "regressor": "linear_weighted (ours)", "n": len(df), "sum_ratio": round(sum(predicted) / measured.sum(), 3)})
        for source, p, m in zip(df["source"], predicted, measured):
            sums = per_source.setdefault(str(source), [0.0, 0.0])
            sums[0], sums[1] = sums[0] + p, sums[1] + m
    for model in models:
        own = sorted(s for s in per_source if family(s) == model)
        source = f"{model}@224" if f"{model}@224" in own else own[0] if len(own) == 1 else None
        if source is not None:
            predicted_ms, measured_ms = per_source[source]
            rows.append({"role": role, "evaluation": f"in-sample sum ({source})", "held_out_model": model, "kind": "all",
                         "regressor": "linear_weighted (ours)", "n": "", "sum_ratio": round(predicted_ms / measured_ms, 3)})
    return rows


def mnas_net() -> ChainModel:
    """torchvision's MNASNet 1.0 as a chain, seeded weights: its layers, then the mean over the
    spatial dimensions its forward takes (an AdaptiveAvgPool2d + Flatten here, the same numbers),
    then its classifier; every _InvertedResidual block is one unit, as MobileNetV2's are."""
    from torchvision.models import mnasnet1_0
    from torchvision.models.mnasnet import _InvertedResidual
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        tv = mnasnet1_0(weights=None).eval()
    for block in tv.modules():
        if isinstance(block, _InvertedResidual):
            # predictor.ops counts a block's skip add by MobileNetV2's attribute name
            block.use_res_connect = block.apply_residual
    named = [*leaves(tv.get_submodule("layers"), "layers", keep=(_InvertedResidual,)),
             ("avgpool", torch.nn.AdaptiveAvgPool2d((1, 1))), ("flatten", torch.nn.Flatten(1)),
             *leaves(tv.get_submodule("classifier"), "classifier")]
    chain = ChainModel(NEVER_PROFILED, [m for _, m in named], [n for n, _ in named]).eval()
    with torch.no_grad():
        x = torch.randn(chain.input_shape)
        if not torch.allclose(chain(x), tv(x), rtol=1e-4, atol=1e-5):
            raise RuntimeError("the MNASNet chain does not compute what torchvision's MNASNet does")
    return chain


def whole_models(role: str, dataset_dir: Path, models: list[str], repeats: int) -> list[dict]:
    """Prefix by prefix, measured against the in-sample and the held-out predictions."""
    shipped = LatencyPredictor.load(role)
    threads = int(shipped.meta.get("threads", 1))
    torch.set_num_threads(threads)
    all_rows, _ = fit_without(role, dataset_dir, None, shipped.meta)
    flush = CacheFlusher()
    rows = []
    for name in [*models, NEVER_PROFILED]:
        model = mnas_net() if name == NEVER_PROFILED else get_model(name)
        held_out, missing = (all_rows, []) if name == NEVER_PROFILED else fit_without(role, dataset_dir, name,
                                                                                      shipped.meta)
        measured = measure_prefixes_ms(model, repeats, flush)
        in_sample = predicted_prefixes_ms(model, planner_for(model, all_rows, all_rows))
        try:
            out_of_sample = [ms for _, ms in predicted_prefixes_ms(model, planner_for(model, held_out, held_out))]
        except KeyError:  # a kind only this model has: no fit without it
            out_of_sample = [float("nan")] * len(measured)
        evaluation = ("never profiled" if name == NEVER_PROFILED else
                      f"leave-one-model-out (no {', '.join(missing)} rows without it)" if missing
                      else "leave-one-model-out")
        for k, ((label, pin), pout, meas) in enumerate(zip(in_sample, out_of_sample, measured), start=1):
            rows.append({"role": role, "threads": threads, "model": name, "evaluation": evaluation,
                         "held_out_model": name, "prefix_units": k, "layer": label, "measured_ms": round(meas, 4),
                         "predicted_in_sample_ms": round(pin, 4),
                         "predicted_held_out_ms": "" if pout != pout else round(pout, 4),
                         "error_in_sample_pct": round(100 * (pin - meas) / meas, 2),
                         "error_held_out_pct": "" if pout != pout else round(100 * (pout - meas) / meas, 2)})
    return rows


def print_models(rows: list[dict]) -> None:
    print(f"{'model':<11} {'units':>5} {'measured ms':>12} {'in-sample':>10} {'err':>7} {'held out':>10} "
          f"{'err':>7}  median |prefix err| in / held out")
    for name in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == name]
        whole = mine[-1]
        held = [abs(r["error_held_out_pct"]) for r in mine if r["error_held_out_pct"] != ""]
        print(f"{name:<11} {whole['prefix_units']:>5} {whole['measured_ms']:>12.2f} "
              f"{whole['predicted_in_sample_ms']:>10.2f} {whole['error_in_sample_pct']:>+6.1f}% "
              f"{whole['predicted_held_out_ms'] or float('nan'):>10.2f} "
              f"{whole['error_held_out_pct'] if whole['error_held_out_pct'] != '' else float('nan'):>+6.1f}%  "
              f"{statistics.median(abs(r['error_in_sample_pct']) for r in mine):.1f}% / "
              f"{statistics.median(held) if held else float('nan'):.1f}%   {whole['evaluation']}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--role", choices=("edge", "cloud"), default="edge")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--repeats", type=int, default=5, help="passes per whole-model measurement (median; default 5)")
    p.add_argument("--models", nargs="+", default=None, metavar="MODEL",
                   help="models to hold out (default: every model the profile has)")
    p.add_argument("--no-models", action="store_true", help="per-kind rows only: no whole-model passes")
    p.add_argument("--dataset-dir", type=Path, default=DATASET_DIR)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    rows = []
    print(f"per-kind accuracy, {args.role} profile, {args.folds}-fold cross-validation (random rows)")
    print(f"{'kind':<10} {'rows':>5}  {'regressor':<24} {'MAPE %':>7} {'±10%':>6} {'±20%':>6}")
    for kind, names in FEATURES.items():
        df = read_dataset(args.dataset_dir / args.role / f"{kind}_lat.csv")
        x, y = df[list(names)].to_numpy(float), df["latency_ms"].to_numpy(float)
        folds = min(args.folds, len(y))
        for name, make in REGRESSORS.items():
            acc = cross_validate(x, y, make, folds)
            rows.append({"role": args.role, "evaluation": f"{args.folds}-fold (random rows)", "held_out_model": "",
                         "kind": kind, "regressor": name, "n_train": "", **acc})
            print(f"{kind:<10} {len(y):>5}  {name:<24} {acc['mape_pct']:>7.1f} "
                  f"{acc['within_10_pct']:>5.0f}% {acc['within_20_pct']:>5.0f}%")
    models = args.models or profile_models(args.role, args.dataset_dir)
    lomo = leave_one_model_out(args.role, args.dataset_dir, models)
    rows += lomo
    print(f"leave-one-model-out, our regression: {'kind':<10} {'held out':<11} {'train':>6} {'test':>5} {'MAPE %':>7}")
    for r in lomo:
        mape = f"{r['mape_pct']:>7.1f}" if r["mape_pct"] != "" else "  (none: only this model has the kind)"
        print(f"{'':<37} {r['kind']:<10} {r['held_out_model']:<11} {r['n_train']:>6} {r['n']:>5} {mape}")
    sums = in_sample_sums(args.role, args.dataset_dir, models)
    rows += sums
    print("in sample, the fit's predictions summed over its own rows / their measured times summed:")
    print("  " + ", ".join(f"{r['kind'] if r['kind'] != 'all' else r['held_out_model']} {r['sum_ratio']:.3f}" for r in sums))
    out = args.out or RESULTS_DIR / f"predictor_accuracy_{args.role}.csv"
    columns = ["role", "evaluation", "held_out_model", "kind", "regressor", "n_train", "n", "mape_pct",
               "within_10_pct", "within_20_pct", "sum_ratio"]
    meta = provenance(role=args.role, folds=args.folds, held_out=" ".join(models))
    write_csv_with_provenance(out, rows, columns, meta)
    print(f"wrote {out}")
    if not args.no_models:
        model_rows = whole_models(args.role, args.dataset_dir, models, args.repeats)
        print_models(model_rows)
        models_out = out.with_name(f"{out.stem}_models.csv")
        finished = {k: v for k, v in provenance().items() if k in ("date", "run_s")}  # after the passes
        write_csv_with_provenance(models_out, model_rows, MODEL_COLUMNS,
                                  {**meta, **finished, "threads": model_rows[0]["threads"], "repeats": args.repeats,
                                   "measured": "real passes, a cache flush before each, median of repeats"})
        print(f"wrote {models_out}")


if __name__ == "__main__":
    main()

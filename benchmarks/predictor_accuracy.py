"""Accuracy of the per-kind latency predictors: cross-validated on the shipped profile.

  python -m benchmarks.predictor_accuracy [--role edge|cloud] [--folds 5]

For each layer kind, 5-fold cross-validation over the profile rows (predictor/dataset/<role>/):
MAPE and share of predictions within ±10% and ±20%, for our regression (LinearRegression,
non-negative, weighted by 1/y^2) and, side by side on the same folds, a random forest and an
unweighted linear fit, to show what the default buys. Whole-model and per-prefix accuracy
against real forward passes is `python -m benchmarks.model_latency`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LinearRegression

from benchmarks import RESULTS_DIR  # fresh results: runs/benchmarks/ (benchmarks/__init__.py)
from predictor.features import FEATURES
from predictor.regression import DATASET_DIR, accuracy, read_dataset
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


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--role", choices=("edge", "cloud"), default="edge")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--dataset-dir", type=Path, default=DATASET_DIR)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    rows = []
    print(f"per-kind accuracy, {args.role} profile, {args.folds}-fold cross-validation")
    print(f"{'kind':<10} {'rows':>5}  {'regressor':<24} {'MAPE %':>7} {'±10%':>6} {'±20%':>6}")
    for kind, names in FEATURES.items():
        df = read_dataset(args.dataset_dir / args.role / f"{kind}_lat.csv")
        x, y = df[list(names)].to_numpy(float), df["latency_ms"].to_numpy(float)
        folds = min(args.folds, len(y))
        for name, make in REGRESSORS.items():
            acc = cross_validate(x, y, make, folds)
            rows.append({"role": args.role, "kind": kind, "regressor": name, **acc})
            print(f"{kind:<10} {len(y):>5}  {name:<24} {acc['mape_pct']:>7.1f} "
                  f"{acc['within_10_pct']:>5.0f}% {acc['within_20_pct']:>5.0f}%")
    out = args.out or RESULTS_DIR / f"predictor_accuracy_{args.role}.csv"
    write_csv_with_provenance(out, rows, list(rows[0]), provenance(role=args.role, folds=args.folds))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

"""Per-kind latency regressions: fit from the profile CSVs, save, load, predict.

Prediction uses the plain coefficients stored in `predictors.json` (a linear model is a dot product),
so no pickle is ever needed to predict and a newer scikit-learn cannot break it. The fitted
scikit-learn objects are saved beside it as `<kind>.pkl` for users who want them;
`load_sklearn_model` refits from the shipped CSV, with a warning, when that pickle was written by
another scikit-learn version.
"""
from __future__ import annotations

import json
import os
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import sklearn
from sklearn.linear_model import LinearRegression

from predictor.features import FEATURES, FREE_KINDS, op_features

PREDICTOR_DIR = Path(__file__).resolve().parent
# The shipped profile and predictors (made by deployment.py on the project's machine, in git).
DATASET_DIR = PREDICTOR_DIR / "dataset"
CONFIG_DIR = PREDICTOR_DIR / "config"
# This machine's own, written by `deployment.py --role ROLE` (git-ignored): <dir>/dataset/<role>/
# and <dir>/config/<role>/. Predictors load from here when this machine has profiled that role,
# else from the shipped ones.
PROFILE_ENV = "NEUROSURGEON_PROFILE_DIR"


def user_profile_dir() -> Path:
    """Where deployment.py writes this machine's profile: $NEUROSURGEON_PROFILE_DIR, else runs/profile."""
    return Path(os.environ.get(PROFILE_ENV) or PREDICTOR_DIR.parent / "runs" / "profile")


def predictor_config_dir(role: str) -> Path:
    """The config folder predictions of `role` come from: this machine's profile if it has one for
    that role, else the shipped one."""
    mine = user_profile_dir() / "config"
    return mine if (mine / role / "predictors.json").is_file() else CONFIG_DIR
ROLES = ("edge", "cloud")
HELD_OUT_SHARE = 0.25
SPLIT_SEED = 0


@dataclass(frozen=True)
class KindModel:
    """latency_ms = intercept + sum(coef * feature), never below 0."""
    features: tuple[str, ...]
    coef: tuple[float, ...]
    intercept: float

    def predict_ms(self, feats: dict[str, float]) -> float:
        value = self.intercept + sum(c * feats[name] for c, name in zip(self.coef, self.features))
        return max(value, 0.0)


def _regressor() -> LinearRegression:
    # Non-negative coefficients: more work never predicts less time, even outside the grid.
    return LinearRegression(positive=True)


def read_dataset(path: Path) -> pd.DataFrame:
    """A profile CSV: plain (its provenance is in NAME.provenance.json); leading '#' lines of a
    profile written before the sidecars are skipped."""
    with open(path) as f:
        skip = 0
        for line in f:
            if not line.startswith("#"):
                break
            skip += 1
    return pd.read_csv(path, skiprows=skip)


def accuracy(predicted: np.ndarray, measured: np.ndarray) -> dict[str, float]:
    rel = np.abs(predicted - measured) / measured
    return {"mape_pct": float(100 * rel.mean()), "within_10_pct": float(100 * (rel <= 0.10).mean()),
            "within_20_pct": float(100 * (rel <= 0.20).mean()), "n": int(len(measured))}


def fit_kind(df: pd.DataFrame, kind: str) -> tuple[LinearRegression, KindModel, dict[str, float]]:
    """Fit on all rows; the accuracy is of a fit on 75% of the rows, tested on the other 25%."""
    names = FEATURES[kind]
    x, y = df[list(names)].to_numpy(float), df["latency_ms"].to_numpy(float)
    rng = np.random.default_rng(SPLIT_SEED)
    order = rng.permutation(len(df))
    n_test = max(1, int(len(df) * HELD_OUT_SHARE)) if len(df) >= 4 else 0
    test, train = order[:n_test], order[n_test:]
    # Weights 1/y^2 minimise the squared *relative* error: a plain fit would serve the 50 ms convs
    # and miss the 20 us ones by several times, and a chain has many more small ops than big ones.
    weight = 1.0 / np.maximum(y, 1e-6) ** 2
    held_out = {}
    if n_test:
        fitted = _regressor().fit(x[train], y[train], sample_weight=weight[train])
        held_out = accuracy(fitted.predict(x[test]), y[test])
    model = _regressor().fit(x, y, sample_weight=weight)
    plain = KindModel(names, tuple(float(c) for c in model.coef_), float(model.intercept_))
    return model, plain, held_out


def fit_role(role: str, meta: dict, dataset_dir: Path = DATASET_DIR,
             config_dir: Path = CONFIG_DIR) -> dict[str, dict[str, float]]:
    """Fit every kind of `role` from its CSVs; write <kind>.pkl and predictors.json."""
    out_dir = config_dir / role
    out_dir.mkdir(parents=True, exist_ok=True)
    kinds, held_out = {}, {}
    for kind in FEATURES:
        df = read_dataset(dataset_dir / role / f"{kind}_lat.csv")
        model, plain, held_out[kind] = fit_kind(df, kind)
        with open(out_dir / f"{kind}.pkl", "wb") as f:
            pickle.dump(model, f)
        kinds[kind] = {"features": list(plain.features), "coef": list(plain.coef),
                       "intercept": plain.intercept, "held_out": held_out[kind]}
    document = {"role": role, "meta": meta, "kinds": kinds}
    (out_dir / "predictors.json").write_text(json.dumps(document, indent=2) + "\n")
    return held_out


class LatencyPredictor:
    """Predicts a layer op's latency (ms) on one device role from the stored coefficients."""

    def __init__(self, role: str, kinds: dict[str, KindModel], meta: dict, source: Path | None = None):
        self.role, self.kinds, self.meta = role, kinds, meta
        self.source = source  # the predictors.json it came from

    @property
    def shipped(self) -> bool:
        return self.source is not None and self.source.parent.parent == CONFIG_DIR

    @classmethod
    def load(cls, role: str, config_dir: Path | None = None) -> LatencyPredictor:
        """From `config_dir`, by default this machine's profile (predictor_config_dir) if it has
        one for `role`, else the shipped predictors. `.source` says which file."""
        config_dir = predictor_config_dir(role) if config_dir is None else config_dir
        path = config_dir / role / "predictors.json"
        try:
            document = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"no latency predictors for role {role!r} at {path}; "
                                    f"run: python deployment.py --role {role}") from None
        kinds = {k: KindModel(tuple(v["features"]), tuple(v["coef"]), float(v["intercept"]))
                 for k, v in document["kinds"].items()}
        return cls(role, kinds, document.get("meta", {}), path)

    def predict_op_ms(self, spec: dict, out_shape: tuple[int, ...]) -> float:
        kind = spec["kind"]
        if kind in FREE_KINDS:
            return 0.0
        return self.kinds[kind].predict_ms(op_features(spec, out_shape))


def load_sklearn_model(role: str, kind: str, config_dir: Path = CONFIG_DIR,
                       dataset_dir: Path = DATASET_DIR):
    """The fitted scikit-learn regressor of `kind`; refit from the CSV when the pickle is stale.

    The pickle is our own file, written by deployment.py, never something from the network.
    """
    document = json.loads((config_dir / role / "predictors.json").read_text())
    saved_with = document.get("meta", {}).get("sklearn")
    if saved_with == sklearn.__version__:
        with open(config_dir / role / f"{kind}.pkl", "rb") as f:
            return pickle.load(f)
    warnings.warn(f"{kind}.pkl was saved by scikit-learn {saved_with}, this is "
                  f"{sklearn.__version__}: refitting it from {role}/{kind}_lat.csv", stacklevel=2)
    model, _, _ = fit_kind(read_dataset(dataset_dir / role / f"{kind}_lat.csv"), kind)
    return model

"""The demo's model owner trains its model at set-up time (`make demo`): an XGBoost
binary:logistic model on scikit-learn's breast_cancer data (it ships with scikit-learn: nothing is
downloaded), deterministic (fixed seed, one thread), so its public shape is the one
scenarios/ms-model.yaml declares. The file lands in the deployment's work folder, never in the
repository, as the owner's node's dataset."""
from __future__ import annotations

from pathlib import Path

TREES, DEPTH = 20, 4


def train_demo_model(path: Path) -> Path:
    import numpy as np
    import xgboost as xgb
    from sklearn.datasets import load_breast_cancer
    data = load_breast_cancer()
    x, y = np.asarray(data.data, dtype=np.float64), np.asarray(data.target)
    names = [str(n) for n in data.feature_names]
    booster = xgb.train({"objective": "binary:logistic", "max_depth": DEPTH, "eta": 0.3, "seed": 0, "nthread": 1,
                         "tree_method": "exact"},
                        xgb.DMatrix(x, label=y, feature_names=names), num_boost_round=TREES)
    path.parent.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(path))
    return path

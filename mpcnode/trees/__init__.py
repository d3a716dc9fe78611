"""Private prediction with gradient-boosted trees: model import (XGBoost JSON and UBJSON,
LightGBM text), the padded Forest, exact integer path decisions and the plaintext reference.
The oblivious evaluation is mpcnode/protocols/trees.py; docs/prediction.md explains both."""
from __future__ import annotations

from pathlib import Path

from . import lightgbm_model, xgboost_model
from .forest import Forest, ModelError
from .plain import Prediction, evaluate, leaf_error_bound

__all__ = ["Forest", "ModelError", "Prediction", "evaluate", "leaf_error_bound", "load_model"]


def load_model(path: str | Path, depth: int | None = None) -> Forest:
    """Read a model file: XGBoost JSON or UBJSON (Booster.save_model), or a LightGBM text model
    (Booster.save_model), told apart by their content. Every tree is padded to full depth: the
    deepest tree's, or `depth` if given (not less). Anything Parley cannot evaluate exactly is
    refused with a ModelError of one line naming the file and, where one is at fault, the tree."""
    p = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ModelError(f"{p}: cannot read the model file ({exc.strerror})") from None
    if data.lstrip()[:4] == b"tree":
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ModelError(f"{p}: a LightGBM text model must be UTF-8") from None
        return lightgbm_model.read(p, text, depth)
    if data.lstrip()[:1] == b"{":
        return xgboost_model.read(p, data, depth)
    raise ModelError(f"{p}: not an XGBoost (JSON, UBJSON) or LightGBM (text) model")

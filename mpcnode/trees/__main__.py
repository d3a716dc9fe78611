"""`python -m mpcnode.trees MODEL [--depth D] [--predict CSV]`: what Parley makes of a model file.

Prints one JSON line: "shape", the model's public shape as a `model` scenario's `shape:` block
takes it (what every node and querier will know: trees, depth after padding, features, classes,
library, kind, feature names, and the class of each tree where it is not t mod classes), the
objective and the leaf encoding's error bound; or, for a file Parley refuses,
the one-line reason on stderr (exit status 2). With --predict, also the plaintext reference's
margins for the rows of a CSV file of feature values (no header; empty or "nan" = missing): the
numbers an MPC prediction of the same rows gives, up to the leaf encoding (docs/prediction.md).
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from . import ModelError, evaluate, leaf_error_bound, load_model


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mpcnode.trees", description=__doc__.split("\n\n")[0],
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("model", help="an XGBoost JSON/UBJSON or LightGBM text model file")
    ap.add_argument("--depth", type=int, default=None, help="pad every tree to this depth (default: the deepest)")
    ap.add_argument("--predict", metavar="CSV", help="print the reference margins of these rows")
    args = ap.parse_args(argv)
    try:
        forest = load_model(args.model, depth=args.depth)
    except ModelError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    trees, depth, features, objective, classes = forest.shape()
    # "shape" is what a `model` scenario's shape: block takes (computation/predict.py ShapeSpec)
    shape = {"trees": trees, "depth": depth, "features": features, "classes": classes, "library": forest.library,
             "kind": forest.kind, "feature_names": forest.feature_names}
    if list(forest.tree_class) != [t % classes for t in range(trees)]:
        shape["tree_class"] = [int(c) for c in forest.tree_class]
    print(json.dumps({"shape": shape, "objective": objective, "leaf_error_bound": leaf_error_bound(forest)}))
    if args.predict:
        try:
            rows = np.genfromtxt(args.predict, delimiter=",", dtype=np.float64, ndmin=2, filling_values=np.nan)
        except (OSError, ValueError) as exc:
            print(f"{args.predict}: cannot read the rows ({str(exc).splitlines()[0]})", file=sys.stderr)
            return 2
        if rows.shape[1] != features:
            print(f"{args.predict}: {rows.shape[1]} columns, the model has {features} features", file=sys.stderr)
            return 2
        for margin in evaluate(forest, rows).margin:
            print(json.dumps([float(m) for m in margin]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

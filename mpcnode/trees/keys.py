"""Exact path decisions as integer comparisons: order-preserving keys of float32 values, the
thresholds of both libraries in the one strict form `key(x) < t`, and the querier's encoding of
its feature values. Pure numpy, no I/O, no randomness.

Why integers: a comparison inside MPC is exact on integers, and the map below is monotone on
float32, so `x < thr` and `x <= thr` become integer comparisons with the same outcome for every
float32 x, including -0.0 (== +0.0), subnormals and +-inf. Rounding values to fixed point before
comparing would move queries that sit at or near a threshold to the other side.

* key(x) for float32 x (not NaN): b = the 32 bits of x as int32; key = b for b >= 0 and
  -(b & 0x7fffffff) for b < 0. Both zeros map to 0; |key| <= key(+inf) = 0x7f800000 < 2^31.
* XGBoost goes left iff x < thr with thr a float32 (it compares in float32): t = key(thr).
* LightGBM goes left iff x <= thr with thr a double (from the text file) and x a float32 value
  cast to double (exact): x <= thr iff x <= floor32(thr), the largest float32 <= thr, so
  t = key(floor32(thr)) + 1.
"""
from __future__ import annotations

import numpy as np

KEY_INF = 0x7f800000                 # key(+inf); key(-inf) = -KEY_INF
# A node's key when the query's feature counts as missing there: below or above every threshold
# key (thresholds lie in [-KEY_INF, KEY_INF + 1]) and below 2^31 in magnitude, so every comparison
# operand fits bit_length 31 (the sign of a - b then needs 5 prefix levels, not 6).
DEFAULT_LEFT_KEY = -(2**31 - 1)
DEFAULT_RIGHT_KEY = 2**31 - 1
KEY_BIT_LENGTH = 31
# The one integer a querier sends per feature (query_keys): the value's key, or KEY_NAN, one past
# key(+inf), for a missing value. Queries are range-checked to [-KEY_INF, KEY_NAN] inside MPC, and
# the nodes derive the is-NaN and is-zero bits from the keys (protocols/trees.py
# query_columns_from_keys), so a querier cannot send a key and missing bits that disagree.
KEY_NAN = KEY_INF + 1
QUERY_KEY_BIT_LENGTH = 33          # KEY_INF - key and key - 1 for keys in [-KEY_INF, KEY_NAN]
# LightGBM drops feature values with |x| <= kZeroThreshold (1e-35f, as a double) when it reads a
# row (c_api.cpp RowPairFunction keeps |x| > kZeroThreshold or NaN), so they reach the trees as
# 0.0; its Zero missing type treats the same range as missing.
LGBM_ZERO_THRESHOLD = float(np.float32(1e-35))

# the key of LGBM_ZERO_THRESHOLD: LightGBM's zero band is every key in [-LGBM_ZERO_KEY, LGBM_ZERO_KEY]
LGBM_ZERO_KEY = int(np.float32(LGBM_ZERO_THRESHOLD).view(np.int32))

MISSING_NONE, MISSING_ZERO, MISSING_NAN = 0, 1, 2      # LightGBM's own codes (decision_type bits 2-3)


def float_keys(x: np.ndarray) -> np.ndarray:
    """Order-preserving int64 keys of float32 values (NaN gives a meaningless key: callers mask
    it). x < y iff key(x) < key(y) for all non-NaN float32 x, y; key(-0.0) = key(0.0) = 0."""
    bits = np.asarray(x, dtype=np.float32).view(np.int32).astype(np.int64)
    return np.where(bits < 0, -(bits & 0x7fffffff), bits)


def floor_float32(thr: np.ndarray) -> np.ndarray:
    """The largest float32 <= thr for each double thr (not NaN)."""
    thr = np.asarray(thr, dtype=np.float64)
    f = thr.astype(np.float32)
    above = f.astype(np.float64) > thr
    return np.where(above, np.nextafter(f, np.float32(-np.inf)), f)


def strict_xgboost(thr32: np.ndarray) -> np.ndarray:
    """t with [x < thr32] = [key(x) < t] (XGBoost: float32 threshold, strict)."""
    return float_keys(np.asarray(thr32, dtype=np.float32))


def strict_lightgbm(thr: np.ndarray) -> np.ndarray:
    """t with [x <= thr] = [key(x) < t] for float32 x and a double thr (LightGBM)."""
    return float_keys(floor_float32(thr)) + 1


def encode_queries(x: np.ndarray, library: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The querier's plaintext encoding of feature values x (queries, features), rounded to
    float32 first (XGBoost's DMatrix stores float32; for LightGBM the decisions are those of the
    float32-rounded query): (key, is_nan, is_zero), each (queries, features) int64.

    key is 0 where x is NaN (LightGBM's None missing type compares a NaN as 0.0; the other types
    never look at the key of a missing value) and, for LightGBM, where |x| <= LGBM_ZERO_THRESHOLD
    (the library reads those as 0.0). is_zero marks |x| <= LGBM_ZERO_THRESHOLD (not NaN): only
    LightGBM's Zero missing type uses it. +-inf keep their keys, the ends of the order."""
    x32 = np.asarray(x, dtype=np.float64).astype(np.float32)
    if x32.ndim != 2:
        raise ValueError(f"queries must be a 2-D array (queries, features), got shape {x32.shape}")
    nan = np.isnan(x32)
    zero = (np.abs(x32.astype(np.float64)) <= LGBM_ZERO_THRESHOLD) & ~nan
    key = float_keys(np.where(nan, np.float32(0), x32))
    if library == "lightgbm":
        key = np.where(zero, 0, key)
    elif library != "xgboost":
        raise ValueError(f"unknown model library {library!r}")
    return key, nan.astype(np.int64), zero.astype(np.int64)


def query_keys(x: np.ndarray, library: str) -> np.ndarray:
    """What a querier secret-shares: one int64 per feature (queries, features), the key of
    encode_queries where the value is present and KEY_NAN where it is NaN (missing)."""
    key, nan, _ = encode_queries(x, library)
    return np.where(nan == 1, KEY_NAN, key)

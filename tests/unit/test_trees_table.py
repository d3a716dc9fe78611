"""Query and score tables (mpcnode/trees/table.py): CSV and Parquet, columns by name in any
order, missing cells, carried columns, and one-line errors that name the file, the column and the
row but never a cell's value."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mpcnode.trees.table import TableError, read_queries, write_scores

pa = pytest.importorskip("pyarrow")
import pyarrow.parquet as pq  # noqa: E402

NAMES = ["mean radius", "b", "c"]


def csv(tmp_path: Path, text: str, name: str = "q.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_csv_columns_by_name_missing_cells_and_carried_ids(tmp_path) -> None:
    p = csv(tmp_path, "id,c,mean radius,b\np1,1.5,-0,inf\np2,,1e-36,NaN\np3, 7 ,-Infinity,nan\n")
    t = read_queries(p, NAMES, carry=["id"])
    want = np.array([[-0.0, np.inf, 1.5], [1e-36, np.nan, np.nan], [-np.inf, np.nan, 7.0]])
    assert np.array_equal(t.x, want, equal_nan=True)
    assert np.signbit(t.x[0, 0])                   # -0 stays -0 (XGBoost and LightGBM treat it as 0)
    assert list(t.carried["id"]) == ["p1", "p2", "p3"]


def test_parquet_with_nulls_integers_and_floats(tmp_path) -> None:
    p = tmp_path / "q.parquet"
    pq.write_table(pa.table({"b": pa.array([1, None, 3]), "c": pa.array([0.5, 2.0, None]),
                             "mean radius": pa.array([None, None, None], type=pa.float32())}), p)
    t = read_queries(p, NAMES)
    assert np.array_equal(t.x, np.array([[np.nan, 1, 0.5], [np.nan, np.nan, 2.0], [np.nan, 3, np.nan]]),
                          equal_nan=True)


@pytest.mark.parametrize("text,match", [
    ("mean radius,b\n1,2\n", "feature column 'c' is missing"),
    ("mean radius,b,c,extra\n1,2,3,4\n", "column 'extra' is not a feature of the model"),
    ("mean radius,b,c,b\n1,2,3,4\n", "column 'b' appears twice"),
    ("mean radius,b,c\n", "no rows"),
    ("mean radius,b,c\n1,2,3\n4,secret-47,6\n", "column 'b', row 2: not a number"),
    ("mean radius,b,c\n1,2,3\n4,5,6\n7,8,9\n1,1_0,2\n", "column 'b', row 4: not a number"),
    ("mean radius,b,c\n1,2,3\n4,5,6\n7,8,0x1\n", "column 'c', row 3: not a number"),
])
def test_refusals_name_file_column_and_row_never_the_value(tmp_path, text, match) -> None:
    p = csv(tmp_path, text)
    with pytest.raises(TableError, match=match) as err:
        read_queries(p, NAMES)
    assert str(p) in str(err.value) and "secret-47" not in str(err.value) and "\n" not in str(err.value)


def test_unreadable_and_unknown_files(tmp_path) -> None:
    with pytest.raises(TableError, match="unknown table format '.xlsx'"):
        read_queries(tmp_path / "q.xlsx", NAMES)
    with pytest.raises(TableError, match="cannot be read as CSV"):
        read_queries(tmp_path / "absent.csv", NAMES)
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(TableError, match="bad.parquet: cannot be read as Parquet"):
        read_queries(bad, NAMES)
    with pytest.raises(TableError, match="carried column 'id' is missing"):
        read_queries(csv(tmp_path, "mean radius,b,c\n1,2,3\n"), NAMES, carry=["id"])


@pytest.mark.parametrize("name", ["s.csv", "s.parquet"])
def test_scores_round_trip_exactly(tmp_path, name) -> None:
    rng = np.random.default_rng(3)
    scores = rng.normal(size=5) * 10.0 ** rng.integers(-12, 12, 5)
    write_scores(tmp_path / name, {"id": np.array(["a", "b", "c", "d", "e"]), "margin": scores,
                                   "class": np.arange(5)})
    back = read_queries(tmp_path / name, ["margin", "class"], carry=["id"])
    assert np.array_equal(back.x[:, 0], scores) and np.array_equal(back.x[:, 1], np.arange(5))
    assert list(back.carried["id"]) == ["a", "b", "c", "d", "e"]


def parquet(tmp_path: Path, names: list[str], arrays: list) -> Path:
    p = tmp_path / "q.pq"
    pq.write_table(pa.Table.from_arrays(arrays, names=names), p)
    return p


@pytest.mark.parametrize("names,arrays,match", [
    (["b", "mean radius"], [pa.array([1.0]), pa.array([2.0])], "feature column 'c' is missing"),
    (["c", "b", "mean radius", "extra"], [pa.array([1.0])] * 4, "column 'extra' is not a feature of the model"),
    (["c", "b", "mean radius", "b"], [pa.array([1.0])] * 4, "column 'b' appears twice"),
    (["c", "b", "mean radius"], [pa.array([], type=pa.float64())] * 3, "no rows"),
    (["c", "b", "mean radius"], [pa.array([1.0, 2.0]), pa.array(["3", "secret-47"]), pa.array([5.0, 6.0])],
     "column 'b', row 2: not a number"),
    (["c", "b", "mean radius"], [pa.array([1.0]), pa.array([True]), pa.array([5.0])], "column 'b' holds bool"),
])
def test_parquet_refusals_name_file_column_and_row_never_the_value(tmp_path, names, arrays, match) -> None:
    p = parquet(tmp_path, names, arrays)
    with pytest.raises(TableError, match=match) as err:
        read_queries(p, NAMES)
    assert str(p) in str(err.value) and "secret-47" not in str(err.value) and "\n" not in str(err.value)


def test_parquet_text_cells_parse_like_csv_cells(tmp_path) -> None:
    # a Parquet file written from a text-typed frame: the same cell rules as CSV
    p = parquet(tmp_path, ["c", "mean radius", "b", "id"],
                [pa.array(["1.5", "", None]), pa.array(["-Infinity", "NaN", "1e-36"]),
                 pa.array(["inf", "-inf", " 2 "]), pa.array([7, 8, 9])])
    t = read_queries(p, NAMES, carry=["id"])
    want = np.array([[-np.inf, np.inf, 1.5], [np.nan, -np.inf, np.nan], [1e-36, 2.0, np.nan]])
    assert np.array_equal(t.x, want, equal_nan=True)
    assert list(t.carried["id"]) == [7, 8, 9]


def test_scores_of_unequal_lengths_are_refused_and_no_file_is_left(tmp_path) -> None:
    with pytest.raises(TableError, match="s.csv: score columns must be one or more of equal length"):
        write_scores(tmp_path / "s.csv", {"id": np.arange(3), "margin": np.zeros(2)})
    with pytest.raises(TableError, match="equal length"):
        write_scores(tmp_path / "s.csv", {})
    assert not (tmp_path / "s.csv").exists()

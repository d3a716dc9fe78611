"""What the coordinator makes of the client rows each live node reports (JobStatus.rows_accepted
and .excluded): every node must report the same, or the job fails naming the node(s) that differ
(docs/outputs.md). The nodes' own agreement (jobrun.take_client_rows) gives honest nodes the same
rows, so a difference means a node misreports them, or the nodes computed over different rows."""
from __future__ import annotations

from mpcnode.recipient import majority
from parley.v1 import node_pb2

# What a node reports about a job's client rows: (rows counted, the excluded (credential, input,
# reason) in input, credential order); None for a node that finished without reporting any.
RowsView = tuple[int, tuple[tuple[str, str, str], ...]]
_SHOWN = 3   # excluded rows named per difference, at most


def rows_view(st: node_pb2.JobStatus) -> RowsView | None:
    if not st.rows_agreed:
        return None
    excluded = sorted(((e.credential, e.input, e.reason) for e in st.excluded), key=lambda x: (x[1], x[0], x[2]))
    return st.rows_accepted, tuple(excluded)


def cross_check_rows(views: dict[str, RowsView | None]) -> tuple[RowsView | None, str]:
    """(the client rows every node in `views` reports, or None when there are none; '' or one line
    saying how they differ: the nodes that differ from the majority and what each reports, or, with
    no majority, what every node reports)."""
    if not views:
        return None, ""
    distinct = set(views.values())
    if len(distinct) == 1:
        return distinct.pop(), ""
    found, top, odd = majority(views)
    if found:
        agree = sorted(o for o, v in views.items() if v == top)
        parts = [f"{o} {_rows_text(views[o], top)}" for o in odd]
        return None, (f"the nodes disagree on the client rows: {', '.join(odd)} "
                      f"differ{'s' if len(odd) == 1 else ''} from the majority ({', '.join(agree)}: "
                      f"{_counts_text(top)}): " + "; ".join(parts))
    parts = [f"{o} {_rows_text(views[o])}" for o in sorted(views)]
    return None, "the nodes disagree on the client rows (no majority): " + "; ".join(parts)


def _counts_text(view: RowsView | None) -> str:
    return "no agreed rows" if view is None else f"{view[0]} counted, {len(view[1])} excluded"


def _rows_text(view: RowsView | None, majority: RowsView | None = None) -> str:
    """What a node reports: against the majority's view, which excluded rows differ; else which
    rows it excludes."""
    if view is None:
        return "reports no agreed rows"
    text = _counts_text(view)
    if majority is None:   # no majority to compare with: which rows it excludes
        lists = [("excludes", list(view[1]))]
    else:
        mine, theirs = set(view[1]), set(majority[1])
        lists = [("also excludes", [r for r in view[1] if r not in theirs]),
                 ("does not exclude", [r for r in majority[1] if r not in mine])]
    details = []
    for word, rows in lists:
        if rows:
            named = ", ".join(f"{c} ({i}): {r}" for c, i, r in rows[:_SHOWN])
            details.append(f"{word} {named}" + (f" and {len(rows) - _SHOWN} more" if len(rows) > _SHOWN else ""))
    return text + (f" ({'; '.join(details)})" if details else "")

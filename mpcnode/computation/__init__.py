"""What a job computes, as data both the coordinator and every node can rebuild and check.

scenario files (YAML) -> validated scenario models (one module per kind: total, auction, vote)
-> circuit IR (builder) -> the canonical computation document and its fingerprint (spec), which
is what an organization approves, what a client checks, and what `plan` and `describe` explain.
The node package owns this code so that a node can rebuild an approved scenario itself; the
coordinator imports it from here.
"""

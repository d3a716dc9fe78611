"""MPC protocols, no networking here: the Shamir session and its comparisons (core, compare), and
protocols written once against the Engine interface (selection, ballots, agreement)."""

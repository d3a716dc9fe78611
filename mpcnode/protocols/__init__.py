"""MPC protocols written against the Exchange interface; no networking here."""

"""Parley coordinator: scenario configs -> circuits -> jobs scheduled on the nodes. Never holds shares."""

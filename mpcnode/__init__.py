"""Parley node: holds secret shares and runs circuits with its peers over mutual TLS."""

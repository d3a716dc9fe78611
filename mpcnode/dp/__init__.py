"""Differential privacy: exact integer samplers (samplers.py) and zCDP accounting (accounting.py).
The protocols that add the noise to shared values are in mpcnode/protocols/noise.py."""

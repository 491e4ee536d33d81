"""Benchmarks: `service.py` (the whole service under load) and `channel_layers.py`."""

"""xrtop: a live, top-style external sampling profiler for R."""

__version__ = "0.1.0"

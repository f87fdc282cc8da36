"""Tests of the five reference servers, each run as ``python -m lab serve KIND --port 0``."""

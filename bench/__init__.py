"""Benchmarks of the ring.db build and the Datasette site on synthetic histories."""

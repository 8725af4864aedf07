"""Seeing the data: the per-sample inspector and the one-page report of a set of runs."""

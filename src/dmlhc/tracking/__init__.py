"""Tracking: the MLflow store, the results reporter of a run, and its plots."""

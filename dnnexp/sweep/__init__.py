"""Multirun support: per-job isolation, skip-on-rerun, the failure table at the end of a sweep."""

"""Sweep reports: the jobs a sweep wrote, their tables and their figures (``python -m
wavelab.report`` is the entry)."""

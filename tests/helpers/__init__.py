"""Plain helpers of the tests: importable as ``helpers.<module>`` (tests/ is on sys.path)."""

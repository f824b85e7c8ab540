"""The lab notebook: benchmark scripts (run as ``python -m benchmarks.NAME``), their shared harness and results."""

"""The measuring harness, metrics, reports and the performance suite."""

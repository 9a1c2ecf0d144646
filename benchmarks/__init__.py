"""Performance measurements; ``python -m benchmarks.run_all --output benchmarks/results.md``."""

"""Benchmarks: `python -m bench` runs them all, `python -m bench NAME ...` some; figures go in bench/README.md."""

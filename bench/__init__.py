"""`python -m bench`: the load benchmark behind `make bench` and docs/performance.md."""

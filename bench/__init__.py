"""Benchmarks of nvila_kernels: `python -m bench [--quick]` (see bench/README.md)."""

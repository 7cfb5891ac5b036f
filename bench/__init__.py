"""Benchmarks of tfx-mtl (``tfx-mtl bench ...``); results are recorded in docs/BENCHMARKS.md."""

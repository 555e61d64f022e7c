"""lt_bench's benchmark harness (``make bench`` = ``python -m benchmarks.bench``), next to the package: it
measures lt_bench and is not part of it. One module per thing measured; :mod:`benchmarks.bench` runs them."""

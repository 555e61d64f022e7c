"""The Hydra config tree (a package so that Hydra finds it as ``pkg://lt_bench.conf`` once installed)."""

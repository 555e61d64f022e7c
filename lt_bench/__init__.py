"""lt_bench: a Hydra + Lightning framework for long-tailed image classification."""

__version__ = "0.1.0"

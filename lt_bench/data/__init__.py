"""Data: sources (what is read), profiles (how it is made long-tailed), DDP-aware samplers, two backends
(in-memory tensors, image files) and the datamodule that joins them.

Importing the package registers every built-in source in :data:`lt_bench.data.sources.SOURCES`: the
in-memory ones in :mod:`.sources`, the image-file ones in :mod:`.files`, so a lookup never depends on
which module happened to be imported first.
"""

from lt_bench.data import files, sources  # noqa: F401  (imported for their registrations)

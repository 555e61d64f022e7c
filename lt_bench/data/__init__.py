"""Data: what a run reads, how it is made long-tailed and how it is served; importing it registers sources.

- :mod:`.sources`: the source contract (:data:`~.sources.SOURCES`, the :class:`~.sources.ImageSource` /
  :class:`~.sources.FileSource` types a loader returns, :func:`~.sources.load_source`).
- :mod:`.loaders`: the built-in sources, one module per family (embedded digits and blobs, CIFAR, idx,
  SVHN, ImageNet-LT / iNat split lists).
- :mod:`.profiles`: long-tail profiles and the validation split; :mod:`.samplers`: DDP-aware batch order.
- two backends side by side: :mod:`.memory` (uint8 tensors, augmented on the device by :mod:`.augment`)
  and :mod:`.files` (image files decoded by DataLoader workers).
- :mod:`.datamodule`: the LightningDataModule that joins them.

Importing the package imports :mod:`.loaders`, so every built-in source is in ``SOURCES`` whichever
module of the package is imported first. Imports only go one way: loaders and backends import the
contract, the datamodule imports the backends; nothing imports this package's ``__init__`` back.
"""

from lt_bench.data import loaders  # noqa: F401  (imported for its registrations)

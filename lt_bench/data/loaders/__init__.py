"""The built-in source loaders, one module per family; importing this package registers them all.

- :mod:`.embedded`: data that ships with a Python package or is generated (``mnist_lt``, ``digits_lt``,
  ``synthetic``); a balanced test set is held out of one pool.
- :mod:`.cifar`: ``cifar10`` / ``cifar100`` from the python pickle batches.
- :mod:`.idx`: ``mnist`` / ``fashion_mnist`` from the four idx(.gz) files.
- :mod:`.svhn`: ``svhn`` from ``train_32x32.mat`` / ``test_32x32.mat``.
- :mod:`.lists`: ``imagenet_lt`` / ``inat2018``, split lists over a folder of JPEGs (a
  :class:`~lt_bench.data.sources.FileSource`).

Each module imports only the contract (:mod:`lt_bench.data.sources`) and, for the hold-out,
:mod:`lt_bench.data.profiles`; nothing imports a loader module back.
"""

from lt_bench.data.loaders import cifar, embedded, idx, lists, svhn  # noqa: F401  (registrations)

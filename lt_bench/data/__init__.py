"""Data: class-count profiles, sources, DDP-aware samplers, batched augmentation and the datamodule."""

"""Augmentation for both backends: batched uint8-tensor augmentation and the per-image ImageNet transforms.

The in-memory backend (:mod:`lt_bench.data.memory`) augments whole batches of uint8 tensors on whatever
device they live on (:class:`BatchAugment`); the file backend (:mod:`lt_bench.data.files`) runs the
standard per-image torchvision pipelines (:func:`train_transform`, :func:`eval_transform`) in its
DataLoader workers.

Batched augmentation has no PIL and no per-image Python loop: a whole batch is padded, cropped and
flipped with one gather.

Randomness is counter-based. Each training sample arrives with an int64 ``key`` that identifies it
(the loader uses ``epoch * N + global position in the epoch``); its crop offsets and flip are an
integer hash of ``(seed, key)`` computed on the tensor's device. A sample therefore gets the same
augmentation however many processes share the batch and whether or not the run was resumed, and no
random-generator state needs saving.

The hash is Chris Wellons' ``lowbias32`` 32-bit avalanche function, evaluated in int64 with every
product split into 16-bit halves, so no intermediate ever exceeds 2**63 (signed overflow is not
something to rely on across devices).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

_M32 = 0xFFFFFFFF
_MUL_1 = 0x7FEB352D
_MUL_2 = 0x846CA68B
# Streams: independent random numbers drawn from one key.
STREAM_CROP_Y = 0
STREAM_CROP_X = 1
STREAM_FLIP = 2


def _mul32_tensor(x: Tensor, m: int) -> Tensor:
    """``(x * m) mod 2**32`` for x in [0, 2**32): two partial products of at most 48 bits each."""
    lo, hi = m & 0xFFFF, m >> 16
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & _M32


def _hash32_tensor(x: Tensor) -> Tensor:
    x = x ^ (x >> 16)
    x = _mul32_tensor(x, _MUL_1)
    x = x ^ (x >> 15)
    x = _mul32_tensor(x, _MUL_2)
    return x ^ (x >> 16)


def _hash32_int(x: int) -> int:
    """The same function on a Python int (for the constants derived from seed and stream)."""
    x &= _M32
    x ^= x >> 16
    x = (x * _MUL_1) & _M32
    x ^= x >> 15
    x = (x * _MUL_2) & _M32
    return x ^ (x >> 16)


def _salts(seed: int, stream: int) -> tuple[int, int]:
    """Two 32-bit constants that depend on all 64 bits of the seed and on the stream."""
    s = _hash32_int(_hash32_int(seed & _M32) ^ ((seed >> 32) & _M32))
    s = _hash32_int(s ^ (stream & _M32))
    return s, _hash32_int(s ^ 0x68E31DA4)


@functools.lru_cache(maxsize=64)
def _salt_columns(seed: int, streams: tuple[int, ...], device: torch.device) -> tuple[Tensor, Tensor]:
    """The two salts of each stream as ``[S, 1]`` int64 columns on ``device``, built once: a host-to-device
    copy every batch would make the host wait for the GPU."""
    salt_a, salt_b = zip(*(_salts(seed, stream) for stream in streams), strict=True)
    return (
        torch.tensor(salt_a, dtype=torch.long, device=device).view(-1, 1),
        torch.tensor(salt_b, dtype=torch.long, device=device).view(-1, 1),
    )


def hash_bits_streams(keys: Tensor, seed: int, streams: Sequence[int]) -> Tensor:
    """:func:`hash_bits` of several streams at once, ``[S, B]``: one pass of ~60 element-wise ops over
    all streams instead of one per stream (each op is a kernel launch on a GPU)."""
    keys = keys.long()
    salt_a, salt_b = _salt_columns(seed, tuple(streams), keys.device)
    high = _hash32_tensor(((keys >> 32) & _M32) ^ salt_a)
    return _hash32_tensor(_hash32_tensor((keys & _M32) ^ high) ^ salt_b)


def hash_bits(keys: Tensor, seed: int, stream: int) -> Tensor:
    """32 random-looking bits per key, as int64 in [0, 2**32), on ``keys``' device.

    A pure function of ``(key, seed, stream)``: both 32-bit halves of the key are mixed in, and for
    a fixed seed and stream distinct keys below 2**32 give distinct outputs (the hash is a bijection).
    """
    return hash_bits_streams(keys, seed, (stream,))[0]


def hash_uniform(keys: Tensor, seed: int, stream: int) -> Tensor:
    """One float32 per key, uniform on the 2**24 multiples of 2**-24 in [0, 1) (1.0 is never reached)."""
    return (hash_bits(keys, seed, stream) >> 8).float() * (2.0**-24)


def _check_batch(images: Tensor, keys: Tensor | None = None) -> None:
    if images.dim() != 4:
        raise ValueError(f"images must be [B, C, H, W], got shape {tuple(images.shape)}")
    if keys is not None and keys.shape != (images.shape[0],):
        raise ValueError(f"keys must have shape [B] = [{images.shape[0]}], got {tuple(keys.shape)}")


def random_crop_flip(images: Tensor, keys: Tensor, seed: int, padding: int, flip: bool) -> Tensor:
    """Zero-pad by ``padding``, crop back to ``H x W`` and (if ``flip``) mirror horizontally.

    For the sample with key k: offsets ``dy, dx`` are uniform on ``{0, ..., 2 * padding}`` (each
    reachable), and with probability 1/2 the crop is flipped left-right, i.e. the result is
    ``pad(x)[:, dy:dy + H, dx:dx + W]`` flipped or not. Returns a tensor of ``images``' dtype and shape
    on its device; ``padding == 0`` with ``flip=False`` returns the images unchanged.
    """
    _check_batch(images, keys)
    if padding < 0:
        raise ValueError(f"padding={padding} must be >= 0")
    b, c, h, w = images.shape
    device = images.device
    keys = keys.to(device)
    streams = ((STREAM_CROP_Y, STREAM_CROP_X) if padding > 0 else ()) + ((STREAM_FLIP,) if flip else ())
    bits = hash_bits_streams(keys, seed, streams) if streams else None  # [S, B], one pass for all draws
    if padding > 0:
        padded = images.new_zeros(b, c, h + 2 * padding, w + 2 * padding)
        padded[:, :, padding : padding + h, padding : padding + w] = images
        # (bits * span) >> 32 maps 32 uniform bits onto {0, ..., span - 1} without float rounding
        dy, dx = (bits[:2] * (2 * padding + 1)) >> 32
    else:
        padded = images
        dy = dx = torch.zeros(b, dtype=torch.long, device=device)
    hp, wp = padded.shape[-2:]
    rows = dy[:, None] + torch.arange(h, device=device)  # [B, H]
    cols = torch.arange(w, device=device).expand(b, w)
    if flip:
        flipped = (bits[-1] >> 31).bool()
        cols = torch.where(flipped[:, None], (w - 1) - cols, cols)
    cols = dx[:, None] + cols  # [B, W]
    # One gather over the flattened padded planes; the index is shared by all channels.
    flat_index = (rows[:, :, None] * wp + cols[:, None, :]).reshape(b, 1, h * w).expand(b, c, h * w)
    return padded.reshape(b, c, hp * wp).gather(2, flat_index).reshape(b, c, h, w)


def _stats(values: Sequence[float], channels: int, device: torch.device, name: str) -> Tensor:
    if len(values) != channels:
        raise ValueError(f"{name} has {len(values)} entries for {channels}-channel images")
    return torch.tensor(list(values), dtype=torch.float32, device=device).view(1, channels, 1, 1)


def normalize(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """float32 ``(x / 255 - mean) / std`` per channel, for uint8 ``[B, C, H, W]`` images."""
    _check_batch(images)
    c = images.shape[1]
    m = _stats(mean, c, images.device, "mean")
    s = _stats(std, c, images.device, "std")
    return (images.float() / 255.0 - m) / s


@dataclass
class BatchAugment:
    """The training and evaluation transforms of one dataset.

    ``train(images, keys)``: random crop with zero padding, optional horizontal flip, normalisation.
    ``eval(images)``: normalisation only. ``normalize=False`` (``dataset.normalize=false``) replaces the
    normalisation by a plain float32 conversion: pixels stay in 0-255, as the ARConvL reference feeds them.
    """

    padding: int
    flip: bool
    mean: tuple[float, ...]
    std: tuple[float, ...]
    seed: int
    autoaugment: bool = False
    randaugment: bool = False
    color_jitter: float = 0.0
    cutout: int = 0
    normalize: bool = True
    # per-device statistics tensors, built once: a host-to-device copy per batch would stall the GPU
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def _normalize(self, images: Tensor) -> Tensor:
        _check_batch(images)
        if not self.normalize:
            return images.float()
        key = (images.device, images.shape[1])
        if key not in self._cache:
            c = images.shape[1]
            self._cache[key] = (
                _stats(self.mean, c, images.device, "mean"),
                _stats(self.std, c, images.device, "std"),
            )
        m, s = self._cache[key]
        return (images.float() / 255.0 - m) / s

    def train(self, images: Tensor, keys: Tensor) -> Tensor:
        """Augmented, normalised float32 training batch; the same keys always give the same result."""
        images = random_crop_flip(images, keys, self.seed, self.padding, self.flip)
        policy = self._policy()
        if policy is not None:
            images = apply_per_image(images, policy)
        out = self._normalize(images)
        return cutout(out, keys, self.seed, self.cutout) if self.cutout > 0 else out

    def _policy(self):
        """torchvision v2 transforms on uint8 tensors, built once (None when none is configured)."""
        if "policy" not in self._cache:
            self._cache["policy"] = build_policy(self.autoaugment, self.randaugment, self.color_jitter)
        return self._cache["policy"]

    def eval(self, images: Tensor) -> Tensor:
        """Normalised float32 evaluation batch."""
        return self._normalize(images)


def build_policy(autoaugment: bool, randaugment: bool, color_jitter: float):
    """Colour jitter then AutoAugment (CIFAR-10 policy) or RandAugment, as torchvision v2 transforms."""
    from torchvision.transforms import v2

    steps = []
    if color_jitter > 0:
        steps.append(v2.ColorJitter(brightness=color_jitter, contrast=color_jitter, saturation=color_jitter))
    if autoaugment:
        steps.append(v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10))
    if randaugment:
        steps.append(v2.RandAugment())
    return v2.Compose(steps) if steps else None


def apply_per_image(images: Tensor, policy) -> Tensor:
    """Each image draws its own policy (v2 transforms draw one for a whole batch tensor). These policies
    use torch's global generator, seeded by ``seed``, rather than the counter-based keys."""
    return torch.stack([policy(image) for image in images])


def cutout(images: Tensor, keys: Tensor, seed: int, size: int) -> Tensor:
    """Cutout (DeVries & Taylor): zero a size x size square, centred uniformly over the image and clipped
    at its borders, in every normalised image — vectorised, randomness from the keys."""
    _, _, h, w = images.shape
    cy = (hash_uniform(keys, seed, 11) * h).long()
    cx = (hash_uniform(keys, seed, 12) * w).long()
    rows = torch.arange(h, device=images.device)[None, :]
    cols = torch.arange(w, device=images.device)[None, :]
    inside_r = (rows >= (cy - size // 2)[:, None]) & (rows < (cy - size // 2 + size)[:, None])
    inside_c = (cols >= (cx - size // 2)[:, None]) & (cols < (cx - size // 2 + size)[:, None])
    mask = inside_r[:, None, :, None] & inside_c[:, None, None, :]
    return images.masked_fill(mask, 0.0)


# ------------------------------------------------------------------ file backend: per-image transforms


def train_transform(image_size: int, mean: Sequence[float], std: Sequence[float], flip: bool = True):
    """RandomResizedCrop(size) + horizontal flip + ToTensor + Normalize (standard ImageNet training)."""
    from torchvision import transforms as T

    steps = [T.RandomResizedCrop(image_size)]
    if flip:
        steps.append(T.RandomHorizontalFlip())
    return T.Compose([*steps, T.ToTensor(), T.Normalize(mean, std)])


def eval_transform(image_size: int, mean: Sequence[float], std: Sequence[float]):
    """Resize(256/224 * size) + CenterCrop(size) + ToTensor + Normalize (standard ImageNet evaluation)."""
    from torchvision import transforms as T

    resize = int(round(image_size * 256 / 224))
    return T.Compose([T.Resize(resize), T.CenterCrop(image_size), T.ToTensor(), T.Normalize(mean, std)])

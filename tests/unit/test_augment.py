"""Batched augmentation: counter-based hash, crop/flip, normalisation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from scipy.stats import chisquare

from lt_bench.data.augment import (
    BatchAugment,
    _mul32_tensor,
    hash_bits,
    hash_uniform,
    normalize,
    random_crop_flip,
)

N = 5000


def _coded_images(n: int, size: int) -> torch.Tensor:
    """n copies of one 1-channel image whose pixel (r, c) holds r * size + c + 1 (never 0)."""
    img = (torch.arange(size * size) + 1).reshape(1, 1, size, size).to(torch.uint8)
    return img.expand(n, 1, size, size).contiguous()


def test_split_multiply_equals_exact_mod_2_32():
    x = torch.tensor([0, 1, 0xFFFFFFFF, 0x12345678, 0xDEADBEEF, 2**31])
    for m in (0x7FEB352D, 0x846CA68B, 0xFFFFFFFF):
        assert _mul32_tensor(x, m).tolist() == [(v * m) & 0xFFFFFFFF for v in x.tolist()]


def test_hash_uniform_range_mean_and_streams():
    keys = torch.arange(N)
    u = hash_uniform(keys, seed=0, stream=0)
    assert u.dtype == torch.float32 and float(u.min()) >= 0 and float(u.max()) < 1
    assert abs(float(u.mean()) - 0.5) < 0.02  # sd of the mean is 0.004
    v = hash_uniform(keys, seed=0, stream=1)
    assert abs(float(torch.corrcoef(torch.stack([u, v]))[0, 1])) < 0.05
    assert torch.equal(u, hash_uniform(keys, seed=0, stream=0))
    assert not torch.equal(u, hash_uniform(keys, seed=1, stream=0))


def test_hash_uses_the_high_half_of_the_key():
    keys = torch.arange(100)
    assert not torch.equal(hash_bits(keys, 0, 0), hash_bits(keys + 2**32, 0, 0))


def test_every_crop_offset_reachable_and_uniform():
    pad, size = 2, 8
    out = random_crop_flip(_coded_images(N, size), torch.arange(N), seed=0, padding=pad, flip=False)
    # out[pad, pad] = image[dy, dx], so its code gives the offsets
    code = out[:, 0, pad, pad].long() - 1
    dy, dx = code // size, code % size
    cells = torch.bincount(dy * (2 * pad + 1) + dx, minlength=(2 * pad + 1) ** 2)
    assert bool((cells > 0).all())
    assert chisquare(cells.numpy()).pvalue > 1e-3
    assert int(dy.max()) == 2 * pad and int(dx.min()) == 0


def test_flip_rate_is_one_half():
    images = _coded_images(N, 6)
    out = random_crop_flip(images, torch.arange(N), seed=3, padding=0, flip=True)
    flipped = (out == images.flip(-1)).flatten(1).all(1)
    kept = (out == images).flatten(1).all(1)
    assert bool((flipped ^ kept).all())  # each sample is either the image or its mirror
    assert abs(float(flipped.float().mean()) - 0.5) < 0.03  # sd 0.007


def test_no_padding_no_flip_is_identity():
    images = torch.randint(0, 256, (7, 3, 5, 4), dtype=torch.uint8)
    assert torch.equal(random_crop_flip(images, torch.arange(7), 0, padding=0, flip=False), images)


def test_crop_equals_manual_pad_and_slice():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(1, 256, (16, 3, 6, 6), dtype=torch.uint8, generator=g)
    pad = 3
    out = random_crop_flip(images, torch.arange(100, 116), seed=5, padding=pad, flip=True)
    padded = F.pad(images, (pad, pad, pad, pad))
    n_flipped = 0
    for b in range(16):  # the test may loop; the code under test does not
        matches = [
            (dy, dx, mirrored)
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            for mirrored in (False, True)
            if torch.equal(
                out[b],
                padded[b, :, dy : dy + 6, dx : dx + 6].flip(-1)
                if mirrored
                else padded[b, :, dy : dy + 6, dx : dx + 6],
            )
        ]
        assert len(matches) == 1
        n_flipped += matches[0][2]
    assert 0 < n_flipped < 16


def test_same_keys_same_output_and_rank_independence():
    images = torch.randint(0, 256, (12, 3, 8, 8), dtype=torch.uint8)
    keys = torch.arange(40, 52)
    full = random_crop_flip(images, keys, seed=1, padding=2, flip=True)
    assert torch.equal(full, random_crop_flip(images, keys, seed=1, padding=2, flip=True))
    assert not torch.equal(full, random_crop_flip(images, keys, seed=2, padding=2, flip=True))
    # a rank augmenting its strided slice gets exactly the slice of the single-process result
    for rank in range(3):
        part = random_crop_flip(images[rank::3], keys[rank::3], seed=1, padding=2, flip=True)
        assert torch.equal(part, full[rank::3])


def test_bad_inputs():
    images = torch.zeros(4, 1, 4, 4, dtype=torch.uint8)
    with pytest.raises(ValueError, match="keys"):
        random_crop_flip(images, torch.arange(3), 0, 1, True)
    with pytest.raises(ValueError, match="mean"):
        normalize(images, (0.5, 0.5), (1.0, 1.0))


def test_normalize_hand_computed():
    images = torch.tensor([0, 51, 255], dtype=torch.uint8).reshape(1, 1, 1, 3)
    out = normalize(images, (0.5,), (0.25,))
    assert out.dtype == torch.float32
    assert torch.allclose(out.flatten(), torch.tensor([-2.0, -1.2, 2.0]))
    rgb = torch.tensor([255, 0, 102], dtype=torch.uint8).reshape(1, 3, 1, 1)
    # (1 - 0.5) / 0.5 = 1, (0 - 0.2) / 0.1 = -2, (0.4 - 0.4) / 2 = 0
    out = normalize(rgb, (0.5, 0.2, 0.4), (0.5, 0.1, 2.0))
    assert torch.allclose(out.flatten(), torch.tensor([1.0, -2.0, 0.0]), atol=1e-6)


def test_batch_augment_composes_the_pieces():
    aug = BatchAugment(padding=2, flip=True, mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3), seed=9)
    images = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    keys = torch.arange(5)
    expected = normalize(random_crop_flip(images, keys, 9, 2, True), aug.mean, aug.std)
    assert torch.equal(aug.train(images, keys), expected)
    assert torch.equal(aug.train(images, keys), expected)  # cached statistics give the same result
    assert torch.equal(aug.eval(images), normalize(images, aug.mean, aug.std))


def test_cutout_zeroes_one_clipped_square_per_image():
    from lt_bench.data.augment import cutout

    images = torch.ones(64, 3, 8, 8)
    out = cutout(images, torch.arange(64), seed=0, size=4)
    zeroed = (out == 0).all(1)  # [B, H, W]: same square in every channel
    per_image = zeroed.flatten(1).sum(1)
    assert (per_image >= 4).all() and (per_image <= 16).all()  # a 4x4 square, clipped at a border
    assert (per_image == 16).any() and (per_image < 16).any()
    rows = zeroed.any(2)
    assert all(int(r.nonzero().max() - r.nonzero().min()) + 1 <= 4 for r in rows)


def test_policy_augmentation_keeps_shape_and_dtype():
    from lt_bench.data.augment import BatchAugment

    torch.manual_seed(0)
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    aug = BatchAugment(
        padding=0,
        flip=False,
        mean=(0.5,) * 3,
        std=(0.25,) * 3,
        seed=0,
        autoaugment=True,
        color_jitter=0.4,
        cutout=8,
    )
    out = aug.train(images.clone(), torch.arange(16))
    assert out.shape == (16, 3, 32, 32) and out.dtype == torch.float32
    plain = aug.eval(images)
    changed = (out != plain).flatten(1).any(1)
    assert changed.all()

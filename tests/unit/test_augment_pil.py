"""The on-device pipeline against the reference PIL + torchvision one it replaces.

Training: the batched crop/flip draws the same distribution as ``RandomCrop(32, padding=4)`` +
``RandomHorizontalFlip()`` and, for a given offset and flip, produces the very same pixels.
Evaluation: normalising uint8 batches gives the same inputs, hence predictions, as ``ToTensor`` +
``Normalize`` on PIL images.
"""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from scipy.stats import chi2_contingency, chisquare
from torch import Tensor, nn
from torchvision import transforms as T
from torchvision.transforms import functional as TF

from benchmarks.throughput import PILImages
from lt_bench.data.augment import BatchAugment, random_crop_flip
from lt_bench.data.loaders.cifar import CIFAR_MEAN, CIFAR_STD
from lt_bench.data.memory import TensorLoader
from lt_bench.data.samplers import EvalBatches
from lt_bench.data.sources import TensorSplit
from lt_bench.models import build_backbone

SIZE, PAD, N = 32, 4, 4000
OFFSETS = [(dy, dx) for dy in range(-PAD, PAD + 1) for dx in range(-PAD, PAD + 1)]


def coded_image() -> Tensor:
    """[3, 32, 32] uint8: red = row + 1, green = column + 1, blue = 255, so no pixel is a padding zero and
    the position a pixel came from can be read off it."""
    rows = torch.arange(SIZE).view(SIZE, 1).expand(SIZE, SIZE)
    cols = torch.arange(SIZE).view(1, SIZE).expand(SIZE, SIZE)
    return torch.stack([rows + 1, cols + 1, torch.full_like(rows, 255)]).to(torch.uint8)


def recover(out: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(dy, dx, flipped) of crops of :func:`coded_image`: output pixel (i, j) shows source row i + dy and
    source column j + dx (mirrored: column 31 - j + dx). Pixels (16, 16) and (16, 17) are never padding."""
    r = out[:, 0, 16, 16].long() - 1
    c0, c1 = out[:, 1, 16, 16].long() - 1, out[:, 1, 16, 17].long() - 1
    flipped = c1 < c0
    dx = torch.where(flipped, c0 - (SIZE - 1 - 16), c0 - 16)
    return r - 16, dx, flipped


def reference_crop(image: Image.Image, dy: int, dx: int, flipped: bool) -> Tensor:
    """What RandomCrop(32, padding=4) then RandomHorizontalFlip produce for that draw."""
    out = TF.crop(TF.pad(image, PAD), dy + PAD, dx + PAD, SIZE, SIZE)
    out = TF.hflip(out) if flipped else out
    return TF.pil_to_tensor(out)


def counts_of(dy: Tensor, dx: Tensor) -> list[int]:
    pairs = list(zip(dy.tolist(), dx.tolist(), strict=True))
    return [pairs.count(o) for o in OFFSETS]


@pytest.fixture(scope="module")
def fast_draws() -> Tensor:
    """N augmented copies of the coded image, one key each, as BatchAugment.train crops and flips them."""
    images = coded_image().expand(N, 3, SIZE, SIZE).contiguous()
    return random_crop_flip(images, torch.arange(N) + 12345, seed=7, padding=PAD, flip=True)


@pytest.fixture(scope="module")
def pil_draws() -> Tensor:
    torch.manual_seed(0)  # torchvision's random transforms draw from torch's global generator
    transform = T.Compose([T.RandomCrop(SIZE, padding=PAD), T.RandomHorizontalFlip(), T.PILToTensor()])
    image = Image.fromarray(coded_image().permute(1, 2, 0).numpy())
    return torch.stack([transform(image) for _ in range(N)])


@pytest.mark.parametrize("source", ["fast", "pil"])
def test_every_offset_is_reachable_uniformly_and_half_are_flipped(source, fast_draws, pil_draws):
    out = fast_draws if source == "fast" else pil_draws
    dy, dx, flipped = recover(out)
    counts = counts_of(dy, dx)
    assert sum(counts) == N  # every recovered offset lies in [-pad, pad]^2
    unreached = [o for o, k in zip(OFFSETS, counts, strict=True) if k == 0]
    assert not unreached, f"offsets never drawn: {unreached}"
    assert chisquare(counts).pvalue > 1e-3  # uniform over the 81 offsets
    # flip rate: binomial sd is 0.5 / sqrt(N) = 0.008; 4 sd
    assert abs(flipped.float().mean().item() - 0.5) < 4 * 0.5 / N**0.5


def test_both_pipelines_draw_the_same_offset_distribution(fast_draws, pil_draws):
    fast, pil = counts_of(*recover(fast_draws)[:2]), counts_of(*recover(pil_draws)[:2])
    # two-sample chi-square on the 81 x 2 contingency table
    assert chi2_contingency([fast, pil]).pvalue > 1e-3


def test_each_fast_crop_equals_the_pil_crop_with_the_same_draw(fast_draws):
    out = fast_draws
    dy, dx, flipped = recover(out)
    image = Image.fromarray(coded_image().permute(1, 2, 0).numpy())
    for i in range(0, N, 37):  # ~100 draws, every offset and both flips among them
        expected = reference_crop(image, int(dy[i]), int(dx[i]), bool(flipped[i]))
        assert torch.equal(out[i], expected), (i, int(dy[i]), int(dx[i]), bool(flipped[i]))


def test_fast_and_pil_evaluation_paths_give_identical_predictions():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (96, 3, SIZE, SIZE), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (96,), generator=g)
    torch.manual_seed(0)
    backbone = build_backbone("resnet32", in_channels=3)
    model = nn.Sequential(backbone, nn.Linear(backbone.out_dim, 10)).eval()
    augment = BatchAugment(padding=PAD, flip=True, mean=CIFAR_MEAN, std=CIFAR_STD, seed=0)

    loader = TensorLoader(TensorSplit(images, labels), EvalBatches(len(labels), 32))
    fast_x = [augment.eval(x) for x, _ in loader]
    pil = PILImages(images, labels, T.Compose([T.ToTensor(), T.Normalize(CIFAR_MEAN, CIFAR_STD)]))
    pil_x = [x for x, _ in torch.utils.data.DataLoader(pil, batch_size=32)]

    assert all(torch.equal(a, b) for a, b in zip(fast_x, pil_x, strict=True))  # bit-identical inputs
    with torch.no_grad():
        fast_logits = torch.cat([model(x) for x in fast_x])
        pil_logits = torch.cat([model(x) for x in pil_x])
    assert torch.equal(fast_logits.argmax(1), pil_logits.argmax(1))
    torch.testing.assert_close(fast_logits, pil_logits, rtol=0, atol=1e-6)

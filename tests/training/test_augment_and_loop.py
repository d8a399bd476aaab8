"""Batch augmentation, the training loop and early stopping, on tiny stand-in models."""

from __future__ import annotations

import torch
from torch import nn

from cfer.data.dataset import FaceExpressionDataset
from cfer.training.augment import AugmentConfig, BatchAugment, make_preprocess
from cfer.core.early_stopping import EarlyStopping
from cfer.training.loop import Trainer, make_loader


def test_augment_draws_per_image_and_is_repeatable():
    images = torch.rand(1, 3, 16, 16).repeat(8, 1, 1, 1)
    first = BatchAugment(AugmentConfig(), torch.Generator().manual_seed(0))(images)
    again = BatchAugment(AugmentConfig(), torch.Generator().manual_seed(0))(images)
    assert torch.equal(first, again)
    # Identical inputs come out different: each image got its own parameters.
    assert not torch.allclose(first[0], first[1])
    assert first.shape == images.shape


def test_augment_identity_when_ranges_are_zero_and_flip_mirrors():
    images = torch.rand(4, 3, 12, 12)
    still = AugmentConfig(flip=False, rotation=0.0, zoom=0.0, translate=0.0)
    assert torch.allclose(BatchAugment(still)(images), images, atol=1e-5)
    assert torch.equal(BatchAugment(AugmentConfig(enabled=False))(images), images)
    torch.manual_seed(0)
    flipped = BatchAugment(AugmentConfig(flip=True, rotation=0.0, zoom=0.0, translate=0.0),
                           torch.Generator().manual_seed(1))(images)
    for original, out in zip(images, flipped):
        assert torch.allclose(out, original, atol=1e-5) or torch.allclose(out, original.flip(-1), atol=1e-5)


def test_preprocess_normalises_uint8():
    batch = torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)
    out = make_preprocess([0.5, 0.5, 0.5], [0.25, 0.25, 0.25])(batch)
    assert out.dtype == torch.float32 and torch.allclose(out, torch.full_like(out, 2.0))


def _toy_dataset(n: int = 64) -> FaceExpressionDataset:
    # Class = which half of the image is bright: learnable in a few steps.
    generator = torch.Generator().manual_seed(0)
    targets = torch.arange(n) % 2
    images = (torch.rand(n, 3, 8, 8, generator=generator) * 60).to(torch.uint8)
    for i, t in enumerate(targets):
        images[i, :, :, (4 if t else 0):(8 if t else 4)] += 150
    return FaceExpressionDataset(images, targets, ("happy", "sad"), torch.arange(n) // 2)


def test_trainer_learns_a_separable_task():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 64, 2))
    trainer = Trainer(model, make_preprocess([0.5] * 3, [0.5] * 3), augment=None, progress=False)
    data = _toy_dataset()
    loader = make_loader(data, 16, shuffle=True, device=torch.device("cpu"), generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = trainer.evaluate(loader)
    for _ in range(5):
        stats = trainer.train_epoch(loader, optimizer)
    after = trainer.evaluate(loader)
    assert stats.images == len(data)
    assert after.loss < before.loss and after.accuracy > 0.9
    assert after.probabilities.shape == (len(data), 2)


def test_regularizer_is_added_to_the_loss():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 64, 2))
    calls = []

    def penalty(m):
        calls.append(1)
        return torch.zeros(())

    trainer = Trainer(model, make_preprocess([0.5] * 3, [0.5] * 3), regularizer=penalty, progress=False)
    loader = make_loader(_toy_dataset(32), 16, shuffle=False, device=torch.device("cpu"))
    trainer.train_epoch(loader, torch.optim.SGD(model.parameters(), lr=0.1))
    assert len(calls) == 2


def test_early_stopping_restores_the_best_weights_and_resumes():
    model = nn.Linear(2, 1)
    stopper = EarlyStopping(patience=2)
    losses = [1.0, 0.5, 0.7, 0.6]
    best_weight = None
    stops = []
    for epoch, loss in enumerate(losses):
        with torch.no_grad():
            model.weight.fill_(float(epoch))
        if epoch == 1:
            best_weight = model.weight.clone()
        stops.append(stopper.step(loss, model, epoch))
    assert stops == [False, False, False, True]
    stopper.restore(model)
    assert torch.equal(model.weight, best_weight) and stopper.best_epoch == 1
    resumed = EarlyStopping(patience=2)
    resumed.load_state_dict(stopper.state_dict())
    assert resumed.best_loss == 0.5 and resumed.epochs_without_improvement == 2

"""Tests of cfer.data.dataset.FaceExpressionDataset."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from cfer.data.dataset import FaceExpressionDataset, load_metadata

CLASSES = ("happy", "sad", "angry")


def make_dataset(n_samples: int = 6, with_extras: bool = True) -> FaceExpressionDataset:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n_samples, 3, 4, 5), dtype=torch.uint8, generator=generator)
    targets = torch.arange(n_samples) % 2  # only happy and sad, so angry has zero samples
    subject_ids = torch.arange(n_samples) // 2 + 100
    extras = {}
    if with_extras:
        extras = dict(
            au_intensities=torch.rand(n_samples, 2, generator=generator),
            au_ids=(4, 12),
            valence_arousal=torch.rand(n_samples, 2, generator=generator) * 2 - 1,
        )
    return FaceExpressionDataset(images, targets, CLASSES, subject_ids, **extras)


def test_getitem_returns_uint8_image_and_int_target() -> None:
    dataset = make_dataset()
    image, target = dataset[3]
    assert len(dataset) == 6
    assert image.dtype == torch.uint8 and image.shape == (3, 4, 5)
    assert torch.equal(image, dataset.images[3])
    assert type(target) is int and target == 1
    assert dataset.image_size == (4, 5)


def test_transform_is_applied_to_the_uint8_image() -> None:
    seen = []

    def to_float(image: torch.Tensor) -> torch.Tensor:
        seen.append(image.dtype)
        return image.float() / 255

    dataset = make_dataset().with_transform(to_float)
    image, _ = dataset[0]
    assert seen == [torch.uint8]
    assert image.dtype == torch.float32 and float(image.max()) <= 1.0


def test_with_transform_is_shallow_and_leaves_the_original_alone() -> None:
    dataset = make_dataset()
    transformed = dataset.with_transform(lambda image: image.float())
    assert dataset.transform is None
    assert transformed.images is dataset.images
    assert dataset[0][0].dtype == torch.uint8
    assert transformed[0][0].dtype == torch.float32


def test_integer_and_float_fields_are_normalised_to_int64_and_float32() -> None:
    dataset = FaceExpressionDataset(
        images=torch.zeros(2, 3, 2, 2, dtype=torch.uint8),
        targets=torch.tensor([0, 1], dtype=torch.int32),
        classes=["a", "b"],
        subject_ids=torch.tensor([5, 6], dtype=torch.int16),
        valence_arousal=torch.zeros(2, 2, dtype=torch.float64),
    )
    assert dataset.targets.dtype == torch.int64
    assert dataset.subject_ids.dtype == torch.int64
    assert dataset.valence_arousal is not None and dataset.valence_arousal.dtype == torch.float32
    assert dataset.classes == ("a", "b")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(images=torch.zeros(2, 3, 2, 2)), "uint8"),
        (dict(images=torch.zeros(2, 1, 2, 2, dtype=torch.uint8)), r"\(N, 3, H, W\)"),
        (dict(targets=torch.tensor([0, 1, 1])), r"shape \(2,\)"),
        (dict(targets=torch.tensor([0.0, 1.0])), "integer"),
        (dict(targets=torch.tensor([0, 2])), r"\[0, 2\)"),
        (dict(classes=("a", "a")), "unique"),
        (dict(subject_ids=torch.tensor([1])), "subject_ids"),
        (dict(au_intensities=torch.zeros(2, 1)), "together"),
        (dict(au_intensities=torch.zeros(2, 3), au_ids=(1, 2)), r"\(2, 2\)"),
        (dict(valence_arousal=torch.zeros(2, 3)), r"valence_arousal must have shape \(2, 2\)"),
        (dict(transform="flip"), "callable"),
    ],
)
def test_invalid_fields_are_rejected_with_a_clear_message(change: dict, message: str) -> None:
    fields = dict(
        images=torch.zeros(2, 3, 2, 2, dtype=torch.uint8),
        targets=torch.tensor([0, 1]),
        classes=("a", "b"),
        subject_ids=torch.tensor([1, 2]),
    )
    fields.update(change)
    with pytest.raises(ValueError, match=message):
        FaceExpressionDataset(**fields)


def test_subset_selects_every_field_in_the_given_order() -> None:
    dataset = make_dataset()
    subset = dataset.subset([4, 1])
    assert len(subset) == 2
    assert torch.equal(subset.images, dataset.images[[4, 1]])
    assert subset.targets.tolist() == [0, 1]
    assert subset.subject_ids.tolist() == [102, 100]
    assert subset.au_ids == (4, 12)
    assert torch.equal(subset.au_intensities, dataset.au_intensities[[4, 1]])
    assert torch.equal(subset.valence_arousal, dataset.valence_arousal[[4, 1]])
    assert subset.classes == CLASSES


def test_subset_accepts_a_boolean_mask_and_rejects_bad_indices() -> None:
    dataset = make_dataset()
    mask = dataset.subject_ids == 101
    assert dataset.subset(mask).subject_ids.tolist() == [101, 101]
    assert len(dataset.subset([])) == 0
    with pytest.raises(IndexError, match="out of range"):
        dataset.subset([0, 6])
    with pytest.raises(IndexError, match="mask"):
        dataset.subset(torch.tensor([True, False]))


def test_select_classes_keeps_those_classes_and_renumbers_in_given_order() -> None:
    dataset = make_dataset()
    selected = dataset.select_classes(["sad", "angry"])
    assert selected.classes == ("sad", "angry")
    assert len(selected) == 3
    assert selected.targets.tolist() == [0, 0, 0]
    assert torch.equal(selected.images, dataset.images[dataset.targets == 1])
    swapped = dataset.select_classes(["sad", "happy"])
    assert swapped.targets.tolist() == [1, 0, 1, 0, 1, 0]


def test_select_classes_names_unknown_classes_and_lists_available_ones() -> None:
    dataset = make_dataset()
    with pytest.raises(ValueError, match=r"\['awed'\].*available classes: \['happy', 'sad', 'angry'\]"):
        dataset.select_classes(["happy", "awed"])
    with pytest.raises(ValueError, match="repeat"):
        dataset.select_classes(["happy", "happy"])


def test_class_counts_and_subjects() -> None:
    dataset = make_dataset()
    assert dataset.class_counts() == {"happy": 3, "sad": 3, "angry": 0}
    assert dataset.subjects().tolist() == [100, 101, 102]


def test_dataloader_batches_uint8_images_and_targets() -> None:
    images, targets = next(iter(DataLoader(make_dataset(), batch_size=4)))
    assert images.shape == (4, 3, 4, 5) and images.dtype == torch.uint8
    assert targets.tolist() == [0, 1, 0, 1]


def test_save_and_load_round_trip_every_field(tmp_path: Path) -> None:
    dataset = make_dataset()
    path = dataset.save(tmp_path / "cache" / "cfee.pt", metadata={"size": 4, "names": ["a"]})
    loaded = FaceExpressionDataset.load(path)
    for field in ("images", "targets", "subject_ids", "au_intensities", "valence_arousal"):
        assert torch.equal(getattr(loaded, field), getattr(dataset, field)), field
    assert loaded.classes == dataset.classes and loaded.au_ids == dataset.au_ids
    assert load_metadata(path) == {"size": 4, "names": ["a"]}
    # The file must hold plain data only, so untrusted caches load safely.
    assert torch.load(path, weights_only=True)["classes"] == list(CLASSES)
    assert [p.name for p in path.parent.iterdir()] == ["cfee.pt"]  # no temp file left


def test_save_without_optional_fields(tmp_path: Path) -> None:
    loaded = FaceExpressionDataset.load(make_dataset(with_extras=False).save(tmp_path / "d.pt"))
    assert loaded.au_intensities is None and loaded.au_ids == ()
    assert loaded.valence_arousal is None


def test_load_rejects_missing_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no saved dataset"):
        FaceExpressionDataset.load(tmp_path / "absent.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(1)}, foreign)
    with pytest.raises(ValueError, match="not a FaceExpressionDataset file"):
        FaceExpressionDataset.load(foreign)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="delete it"):
        FaceExpressionDataset.load(garbage)


def test_avalanche_reads_targets_and_builds_a_class_incremental_stream() -> None:
    utils = pytest.importorskip("avalanche.benchmarks.utils")
    supervised = pytest.importorskip("avalanche.benchmarks.scenarios.supervised")
    dataset = utils.as_classification_dataset(make_dataset(n_samples=6))
    assert list(dataset.targets) == [0, 1, 0, 1, 0, 1]
    benchmark = supervised.class_incremental_benchmark(
        {"train": dataset, "test": dataset}, num_experiences=2
    )
    seen = sorted(c for e in benchmark.train_stream for c in e.classes_in_this_experience)
    assert seen == [0, 1]

"""The few-shot methods on tiny features: the registry, the learner contract, each method's rule."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cfer.config import ConfigError
from cfer.core.calibration import calibrate_prototypes
from cfer.core.imprinting import imprint_weights
from cfer.fewshot import (
    FEWSHOT_METHODS,
    BaseSession,
    check_method_options,
    create_learner,
    method_config,
)
from cfer.fewshot.methods import _balanced_draw
from cfer.models.heads import LinearHead

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py

DIM = 6
FAST = {"paper": {"steps": 5}, "paper+memory": {"steps": 5}, "imprint-ft": {"steps": 5},
        "c-ranpac": {"samples": 50}, "compose-ranpac": {"samples": 50}}
BASE_NAMES = ("happy", "surprised", "disgusted")  # outputs 0-2; the compounds below are blends of them
NEW_NAMES = ("happily_surprised", "happily_disgusted", "disgustedly_surprised")  # outputs 3-5


def tiny_base(per_class: int = 10) -> BaseSession:
    """Three base classes along the first three axes, and a head that knows them."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(3).repeat(per_class)
    features = 2 * torch.eye(3, DIM)[labels] + 0.2 * torch.rand(len(labels), DIM, generator=generator)
    head = LinearHead(DIM, 3)
    with torch.no_grad():
        head.fc.weight.copy_(3 * torch.eye(3, DIM))
        head.fc.bias.zero_()
    return BaseSession(head.eval(), features, labels, classes=BASE_NAMES)


def shots(axis: int, count: int = 3, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return 2 * torch.eye(DIM)[axis].repeat(count, 1) + 0.2 * torch.rand(count, DIM, generator=generator)


def test_registry_knows_every_method_and_names_them_on_a_typo():
    assert set(FEWSHOT_METHODS) == {"paper", "paper+memory", "imprint", "teen", "imprint-ft", "ranpac", "c-ranpac",
                                    "compose", "compose-ranpac"}
    with pytest.raises(KeyError, match="known few-shot methods"):
        create_learner("imprinting", tiny_base())


def test_method_options_are_checked_against_each_config():
    assert method_config("teen", {"shift_weight": 0.2}).shift_weight == 0.2
    with pytest.raises(ConfigError, match="shift_weigth"):
        method_config("teen", {"shift_weigth": 0.2})
    with pytest.raises(ConfigError, match="not among the methods run"):
        check_method_options(["imprint"], {"teen": {}})
    with pytest.raises(KeyError):
        check_method_options(["imprint", "nope"], {})


@pytest.mark.parametrize("method", list(FEWSHOT_METHODS))
def test_every_method_adds_classes_session_by_session_and_leaves_the_basic_model_alone(method):
    base = tiny_base()
    head_before = {k: v.clone() for k, v in base.head.state_dict().items()}
    learner = create_learner(method, base, FAST.get(method), seed=3)
    assert learner.num_classes == 3 and learner.logits(base.features).shape == (30, 3)
    learner.learn(shots(3), torch.full((3,), 3), names=NEW_NAMES[:1])
    learner.learn(torch.cat([shots(4), shots(5)]), torch.tensor([4, 4, 4, 5, 5, 5]), names=NEW_NAMES[1:])
    assert learner.num_classes == 6 and learner.sessions == 2 and learner.class_names == [*BASE_NAMES, *NEW_NAMES]
    assert learner.logits(base.features).shape == (30, 6) and learner.predict(base.features).shape == (30,)
    assert all(torch.equal(v, head_before[k]) for k, v in base.head.state_dict().items())
    with pytest.raises(ValueError, match="next outputs"):
        learner.learn(shots(0), torch.full((3,), 7))  # output 6 comes first
    # the same seed gives the same learner
    again = create_learner(method, base, FAST.get(method), seed=3)
    again.learn(shots(3), torch.full((3,), 3), names=NEW_NAMES[:1])
    again.learn(torch.cat([shots(4), shots(5)]), torch.tensor([4, 4, 4, 5, 5, 5]), names=NEW_NAMES[1:])
    assert torch.allclose(again.logits(base.features), learner.logits(base.features))


@pytest.mark.parametrize("method", ["imprint", "teen", "imprint-ft", "paper+memory", "ranpac", "c-ranpac"])
def test_methods_that_keep_the_basic_classes_recognise_them_and_the_new_one(method):
    base = tiny_base()
    options = {"imprint-ft": {"steps": 50}, "paper+memory": {"steps": 100, "lr": 1e-2}}.get(method)
    learner = create_learner(method, base, options)
    learner.learn(shots(3), torch.full((3,), 3), names=NEW_NAMES[:1])
    queries = torch.cat([base.features, shots(3, 10, seed=9)])
    truth = torch.cat([base.labels, torch.full((10,), 3)])
    assert (learner.predict(queries) == truth).float().mean() == 1.0


def test_imprint_sets_the_new_row_from_the_shots_with_no_gradient_step():
    base = tiny_base()
    learner = create_learner("imprint", base)
    before = learner.classifier.weight.detach().clone()
    support = shots(4)
    learner.learn(support, torch.full((3,), 3))
    weight = learner.classifier.weight.detach()
    assert torch.allclose(weight[:3], before)  # base rows untouched
    assert torch.allclose(weight[3], F.normalize(F.normalize(support, dim=1).mean(0), dim=0))
    assert torch.allclose(before, imprint_weights(base.features, base.labels))  # base rows imprinted from training data


def test_teen_calibrates_the_new_prototype_toward_the_base_prototypes():
    base = tiny_base()
    learner = create_learner("teen", base, {"shift_weight": 0.3, "softmax_temperature": 4.0})
    support = shots(1) + shots(4)  # between base class 1 and a new direction
    learner.learn(support, torch.full((3,), 3))
    base_means = torch.stack([base.features[base.labels == c].mean(0) for c in range(3)])
    expected = calibrate_prototypes(support.mean(0, keepdim=True), base_means, 0.3, 4.0)
    assert torch.allclose(learner.classifier.weight.detach()[3], expected[0], atol=1e-6)
    plain = create_learner("teen", base, {"shift_weight": 0.0})
    plain.learn(support, torch.full((3,), 3))
    assert torch.allclose(plain.classifier.weight.detach()[3], F.normalize(support.mean(0), dim=0), atol=1e-6)


def test_imprint_ft_moves_the_new_rows_only():
    base = tiny_base()
    imprinted, tuned = create_learner("imprint", base), create_learner("imprint-ft", base, {"steps": 20})
    for learner in (imprinted, tuned):
        learner.learn(shots(3), torch.full((3,), 3))
    assert torch.allclose(tuned.classifier.weight[:3], imprinted.classifier.weight[:3])
    assert not torch.allclose(tuned.classifier.weight[3], imprinted.classifier.weight[3])


def test_paper_memory_keeps_the_top_scored_samples_per_class_and_adds_the_shots():
    base = tiny_base(per_class=10)  # 30 images: M = floor(0.3 · 30) = 9, m = 3 per basic class
    learner = create_learner("paper+memory", base, {"steps": 2})
    assert learner.memory_per_class == 3
    assert torch.bincount(learner.memory_labels).tolist() == [3, 3, 3]
    for class_id in range(3):
        members = base.features[base.labels == class_id]
        scores = base.head(members).softmax(1)[:, class_id]
        best = members[scores.argsort(descending=True)[:3]]
        kept = learner.memory_features[learner.memory_labels == class_id]
        assert torch.allclose(kept, best)
    learner.learn(shots(3, count=5), torch.full((5,), 3))
    assert torch.bincount(learner.memory_labels).tolist() == [3, 3, 3, 3]  # 3 of the 5 shots kept


def test_balanced_batches_give_each_class_its_share():
    targets = torch.tensor([0] * 90 + [1] * 9 + [2] * 1)
    draw = _balanced_draw(targets, torch.Generator().manual_seed(0))
    counts = torch.bincount(targets[draw(3000)], minlength=3).float() / 3000
    assert torch.allclose(counts, torch.full((3,), 1 / 3), atol=0.04)

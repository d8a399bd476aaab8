"""The RanPAC and compositional few-shot methods against hand computations: exact statistics, calibrated
means, the compositional prior."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cfer.core.prototypes import RandomProjectionRidge
from cfer.fewshot import BaseSession, create_learner
from cfer.models.heads import LinearHead

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py

DIM = 6
BASE_NAMES = ("happy", "surprised", "disgusted")


def base_session(with_aus: bool = False) -> BaseSession:
    """Three base classes along the first three axes; with AUs (columns 1, 2, 12, 25, 26), AU 12 on the
    happy images and AU 26 on the surprised ones."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(3).repeat(10)
    features = 2 * torch.eye(3, DIM)[labels] + 0.2 * torch.rand(len(labels), DIM, generator=generator)
    zero = torch.zeros(len(labels))
    aus = torch.stack([zero, zero, (labels == 0).float() * 3, zero, (labels == 1).float() * 2], 1) if with_aus else None
    return BaseSession(LinearHead(DIM, 3).eval(), features, labels, classes=BASE_NAMES,
                       au_intensities=aus, au_ids=(1, 2, 12, 25, 26) if with_aus else ())


def repeated(vector: torch.Tensor, count: int) -> torch.Tensor:
    """``count`` identical shots: no covariance of their own."""
    return vector.repeat(count, 1)


def new_class_sums(learner, output: int) -> torch.Tensor:
    return learner.head.class_sums[:, output].float()


def test_ranpac_is_exact_one_fit_of_base_and_shots_at_the_chosen_ridge() -> None:
    base = base_session()
    learner = create_learner("ranpac", base, {"projection_dim": 64}, seed=2)
    support = torch.rand(4, DIM, generator=torch.Generator().manual_seed(5)) + torch.eye(DIM)[4]
    learner.learn(support, torch.full((4,), 3), names=["happily_surprised"])
    once = RandomProjectionRidge(DIM, 64, ridge=learner.head.ridge, seed=2)
    once.update(torch.cat([base.features, support]), torch.cat([base.labels, torch.full((4,), 3)]))
    queries = torch.randn(7, DIM)
    assert torch.allclose(learner.logits(queries), once(queries), atol=1e-4)


def test_c_ranpac_samples_at_the_calibrated_mean() -> None:
    base = base_session()
    options = {"projection_dim": 32, "ridge": 1.0, "shift_weight": 0.75, "covariance_weight": 0.0, "samples": 20}
    learner = create_learner("c-ranpac", base, options)
    shot = torch.tensor([0.0, 0.0, 0.0, 2.0, 0.0, 0.0])
    learner.learn(repeated(shot, 3), torch.full((3,), 3), names=["happily_surprised"])
    means = torch.stack([base.features[base.labels == j].mean(0) for j in range(3)])
    weights = torch.softmax(16 * F.normalize(shot, dim=0) @ F.normalize(means, dim=1).T, 0)
    mean = 0.75 * shot + 0.25 * weights @ means  # β = 0 and identical shots: every sample is the mean
    assert torch.allclose(new_class_sums(learner, 3), 20 * learner.head.expand(mean[None])[0], rtol=1e-4)


def sampled(learner, support: torch.Tensor, name: str) -> torch.Tensor:
    """The pseudo-features one session of class ``name`` adds to the learner's statistics."""
    captured = []
    sample = learner._statistics_samples

    def spy(*args):
        captured.append(sample(*args))
        return captured[-1]

    learner._statistics_samples = spy
    learner.learn(support, torch.full((len(support),), learner.num_classes), names=[name])
    features, labels = captured[0]
    assert torch.equal(labels, torch.full((len(features),), learner.num_classes - 1))
    return features


@pytest.mark.parametrize("shots", [1, 5])
def test_compose_ranpac_pulls_the_mean_toward_the_components_by_k_over_k_plus_kappa(shots: int) -> None:
    base = base_session()
    options = {"projection_dim": 32, "ridge": 1.0, "prior": "components", "prior_shots": 3.0,
               "covariance_weight": 0.0, "samples": 20000}
    shot = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 2.0])
    samples = sampled(create_learner("compose-ranpac", base, options), repeated(shot, shots), "happily_disgusted")
    means = torch.stack([base.features[base.labels == j].mean(0) for j in range(3)])
    prior = (means[0] + means[2]) / 2  # happy + disgusted, s = 0.5: the plain mean of the two prototypes
    mean = shots / (shots + 3.0) * shot + 3.0 / (shots + 3.0) * prior
    # five identical shots and β = 0: no spread at all; one shot: the components' covariances (β = 1)
    assert torch.allclose(samples.mean(0), mean, atol=1e-5 if shots == 5 else 5e-3)
    assert (samples.std(0).max() < 1e-5) == (shots == 5)


def test_compose_ranpac_with_one_shot_samples_the_components_covariances() -> None:
    base = base_session()
    options = {"projection_dim": 32, "ridge": 1.0, "prior": "none", "samples": 4000}
    shot = torch.full((1, DIM), 1.0)
    samples = sampled(create_learner("compose-ranpac", base, options, seed=1), shot, "happily_surprised").double()
    rows = [base.features[base.labels == j].double() for j in (0, 1)]
    expected = 0.5 * torch.cov(rows[0].T) + 0.5 * torch.cov(rows[1].T)
    assert torch.allclose(samples.mean(0), shot[0].double(), atol=0.01)  # prior 'none': the shot is the mean
    assert torch.allclose(torch.cov(samples.T), expected, atol=2e-3)


def test_compose_ranpac_uses_the_au_map_when_the_data_has_au_intensities() -> None:
    base = base_session(with_aus=True)
    options = {"projection_dim": 32, "ridge": 1.0, "prior_shots": 1e9, "covariance_weight": 0.0, "samples": 10,
               "au_ridge": 1e-6}
    learner = create_learner("compose-ranpac", base, options)  # prior 'auto' -> 'au'
    assert learner.prior.kind == "au"
    samples = sampled(learner, torch.zeros(2, DIM), "happily_surprised")  # AUs 1, 2, 12, 25
    # the base images show AU 12 (happy, at 3) or AU 26 (surprised, at 2) or neither (disgusted): the map is
    # exact on the three groups' means, and AU 12 at its typical intensity, alone, is the happy mean
    happy = base.features[base.labels == 0].mean(0)
    assert torch.allclose(samples, happy.expand(10, -1), atol=1e-4)


@pytest.mark.parametrize("method", ["compose", "compose-ranpac"])
def test_compose_says_what_it_needs(method: str) -> None:
    base = base_session()
    with pytest.raises(ValueError, match="needs the data's AU intensities"):
        create_learner(method, base, {"prior": "au"})
    unnamed = BaseSession(base.head, base.features, base.labels)
    with pytest.raises(ValueError, match="class names"):
        create_learner(method, unnamed)
    learner = create_learner(method, base)
    with pytest.raises(ValueError, match="each new class's name"):
        learner.learn(torch.ones(2, DIM), torch.full((2,), 3))
    with pytest.raises(ValueError, match="not among the basic classes"):
        create_learner(method, base).learn(torch.ones(2, DIM), torch.full((2,), 3), names=["sadly_angry"])
    with pytest.raises(ValueError, match="not a compound"):
        create_learner(method, base).learn(torch.ones(2, DIM), torch.full((2,), 3), names=["neutral_face"])


@pytest.mark.parametrize("shots", [1, 4])
def test_compose_row_is_the_shots_mean_shrunk_toward_the_components(shots: int) -> None:
    base = base_session()
    learner = create_learner("compose", base, {"prior": "components", "prior_shots": 2.0})
    support = torch.rand(shots, DIM, generator=torch.Generator().manual_seed(3))
    learner.learn(support, torch.full((shots,), 3), names=["disgustedly_surprised"])
    means = torch.stack([base.features[base.labels == j].mean(0) for j in range(3)])
    expected = shots / (shots + 2.0) * support.mean(0) + 2.0 / (shots + 2.0) * (means[1] + means[2]) / 2
    rows = learner.classifier.weight
    assert torch.allclose(rows[:3], means, atol=1e-6) and torch.allclose(rows[3], expected, atol=1e-6)
    queries = torch.randn(5, DIM)
    assert torch.allclose(learner.logits(queries), 16 * F.normalize(queries, dim=1) @ F.normalize(rows, dim=1).T,
                          atol=1e-5)


def test_compose_starts_at_the_au_map_and_without_a_prior_at_the_shots() -> None:
    base = base_session(with_aus=True)
    learner = create_learner("compose", base, {"prior_shots": 1e9, "au_ridge": 1e-6})  # 'auto' -> the AU map
    learner.learn(torch.zeros(2, DIM), torch.full((2,), 3), names=["happily_surprised"])
    assert torch.allclose(learner.classifier.weight[3], base.features[base.labels == 0].mean(0), atol=1e-4)
    plain = create_learner("compose", base, {"prior": "none"})
    support = torch.rand(3, DIM, generator=torch.Generator().manual_seed(4))
    plain.learn(support, torch.full((3,), 3), names=["happily_surprised"])
    assert torch.allclose(plain.classifier.weight[3], support.mean(0))

"""The compositional prior and the nearest-prototype rule, against hand computations."""

import pytest
import torch

from cfer.core.composition import AUFeatureMap, component_pairs, compositional_prior, nearest_prototype
from cfer.taxonomy import get_category

BASIC = ("happy", "sad", "fearful", "angry", "surprised", "disgusted")


def test_component_pairs_index_the_taxonomy_components():
    components = [get_category(name).components for name in ("happily_surprised", "sadly_angry")]
    assert component_pairs(components, BASIC).tolist() == [[0, 4], [1, 3]]


def test_component_pairs_name_what_is_missing():
    with pytest.raises(ValueError, match="surprised"):
        component_pairs([("happy", "surprised")], ("happy", "sad"))
    with pytest.raises(ValueError, match="two basic components"):
        component_pairs([get_category("happy").components], BASIC)


def test_prior_by_hand():
    means = torch.tensor([[2.0, 0.0], [0.0, 4.0], [1.0, 2.0]])
    pairs = torch.tensor([[0, 1]])
    r = torch.tensor([1.0, 2.0])  # the mean of the means
    assert torch.allclose(compositional_prior(means, torch.tensor([[0, 2]]), 1.0), torch.tensor([[2.0, 0.0]]))  # m3 = r
    assert torch.allclose(compositional_prior(means, torch.tensor([[0, 1]]), 1.0), r.unsqueeze(0))
    # plain mean at s = 0.5, whatever the reference
    for reference in (None, torch.tensor([5.0, -3.0])):
        assert torch.allclose(compositional_prior(means, pairs, 0.5, reference), torch.tensor([[1.0, 2.0]]))
    # additive: r + (m1 - r) + (m2 - r) = m1 + m2 - r
    reference = torch.tensor([0.5, 0.5])
    assert torch.allclose(compositional_prior(means, pairs, 1.0, reference), torch.tensor([[1.5, 3.5]]))
    assert torch.allclose(compositional_prior(means, pairs, 1.0), means[0] + means[1] - r)


def test_nearest_prototype_by_hand():
    features = torch.tensor([[3.0, 4.0], [1.0, 1.0]])
    prototypes = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert torch.allclose(nearest_prototype(features, prototypes), torch.tensor([[0.6, 0.8], [2 ** -0.5, 2 ** -0.5]]))
    # centring moves the origin: (1, 1) - (1, 1) = 0 stays 0; prototypes become (0, -1), (-1, 1)
    centred = nearest_prototype(torch.tensor([[1.0, 3.0]]), prototypes, torch.tensor([1.0, 1.0]))
    assert torch.allclose(centred, torch.tensor([[-1.0, 2 ** -0.5]]))


def test_au_map_recovers_a_linear_face_and_predicts_an_unseen_combination():
    # features = r + W a exactly; basic images show AU 1 alone, AU 2 alone, neither; the compound both
    r, w = torch.tensor([1.0, -1.0, 0.5]), torch.tensor([[2.0, 0.0, 1.0], [0.0, 3.0, -1.0]])
    intensities = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 3.0], [0.0, 0.0]])
    features = r + intensities @ w
    au_map = AUFeatureMap(intensities, features, ridge=1e-9)
    assert torch.allclose(au_map.typical, torch.tensor([1.5, 2.0]))  # means over the images that show each AU
    template = au_map.template([[1, 2], [2]], au_ids=[1, 2])
    assert torch.allclose(template, torch.tensor([[1.5, 2.0], [0.0, 2.0]]))
    assert torch.allclose(au_map(template), r + template @ w, atol=1e-5)


def test_au_map_shrinks_toward_the_mean_face_with_a_large_ridge():
    intensities = torch.tensor([[1.0], [0.0]])
    features = torch.tensor([[4.0], [2.0]])
    au_map = AUFeatureMap(intensities, features, ridge=1e12)
    assert torch.allclose(au_map(torch.tensor([[1.0]])), torch.tensor([[3.0]]), atol=1e-5)


def test_au_template_names_an_unknown_au():
    au_map = AUFeatureMap(torch.ones(3, 1), torch.ones(3, 2))
    with pytest.raises(ValueError, match=r"\[9\]"):
        au_map.template([[1, 9]], au_ids=[1])

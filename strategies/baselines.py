"""Adapters that let Avalanche's own baselines run on a :class:`~strategies.protocols.GrowingClassifier`.

Avalanche grows models through ``DynamicModule.adaptation``; cfer's models grow through
``add_classes`` instead (``ClassifierExpansionPlugin``), so two baselines need a word more:

* GDumb retrains from an initial model at every experience and grows that model with Avalanche's
  model adaptation, which a ``GrowingClassifier`` ignores: :class:`GDumbInitModelGrowth` grows it;
* iCaRL measures its feature size on its first training batch, which the zero-epoch basic
  experience of ``cfer train-incremental`` never runs: :class:`ICaRLPriming` measures it on one
  sample.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from avalanche.core import SupervisedPlugin
from avalanche.training.plugins import GDumbPlugin
from avalanche.training.supervised.icarl import _ICaRLPlugin

from strategies.plugins import grow_to_cover, trained_classes

if TYPE_CHECKING:
    from avalanche.training.templates import SupervisedTemplate

__all__ = ["GDumbInitModelGrowth", "ICaRLPriming"]


class GDumbInitModelGrowth(SupervisedPlugin):
    """Grow GDumb's initial model alongside the trained one, as Avalanche's model adaptation would."""

    def after_train_dataset_adaptation(self, strategy: "SupervisedTemplate", **kwargs: Any) -> None:
        for plugin in strategy.plugins:
            if isinstance(plugin, GDumbPlugin) and plugin.init_model is not None:
                grow_to_cover(plugin.init_model, trained_classes(strategy))


class ICaRLPriming(SupervisedPlugin):
    """Give iCaRL its input, output and embedding sizes before an experience of zero epochs."""

    def before_training_exp(self, strategy: "SupervisedTemplate", **kwargs: Any) -> None:
        if strategy.train_epochs > 0:
            return
        for plugin in strategy.plugins:
            if isinstance(plugin, _ICaRLPlugin) and plugin.embedding_size is None:
                _prime(plugin, strategy)


@torch.no_grad()
def _prime(plugin: _ICaRLPlugin, strategy: "SupervisedTemplate") -> None:
    image = strategy.experience.dataset.eval()[0][0].unsqueeze(0).to(strategy.device)
    model = strategy.model
    was_training = model.training
    model.eval()
    features = model.feature_extractor(image)
    plugin.input_size = image.shape[1:]
    plugin.output_size = model.train_classifier(features).shape[1]
    plugin.embedding_size = features.shape[1]
    model.train(was_training)

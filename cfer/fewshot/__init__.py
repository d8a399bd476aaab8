"""Few-shot learning of compound expressions: episode sampling, the paper's protocol, episodic evaluation."""

from cfer.fewshot.classifiers import (
    EPISODE_CLASSIFIERS,
    EpisodeClassifier,
    LinearProbe,
    PrototypeClassifier,
    create_episode_classifier,
    register_episode_classifier,
)
from cfer.fewshot.config import FewShotConfig, default_fewshot_basic_phase
from cfer.fewshot.episodic import (
    CLASS_POOLS,
    EpisodicConfig,
    class_pool,
    evaluate_episodes,
)
from cfer.fewshot.features import FeatureSet, extract_features
from cfer.fewshot.protocol import (
    PaperProtocolConfig,
    evaluate_new_class,
    learn_new_class,
    new_class_metrics,
    run_paper_protocol,
    select_shots,
)
from cfer.fewshot.reports import format_fewshot_summary, write_fewshot_reports
from cfer.fewshot.runner import run_fewshot, split_subjects
from cfer.fewshot.sampler import Episode, EpisodeSampler, LabelledSamples
from cfer.fewshot.stats import MeanCI, mean_ci

__all__ = [
    "CLASS_POOLS",
    "EPISODE_CLASSIFIERS",
    "Episode",
    "EpisodeClassifier",
    "EpisodeSampler",
    "EpisodicConfig",
    "FeatureSet",
    "FewShotConfig",
    "LabelledSamples",
    "LinearProbe",
    "MeanCI",
    "PaperProtocolConfig",
    "PrototypeClassifier",
    "class_pool",
    "create_episode_classifier",
    "default_fewshot_basic_phase",
    "evaluate_episodes",
    "evaluate_new_class",
    "extract_features",
    "format_fewshot_summary",
    "learn_new_class",
    "mean_ci",
    "new_class_metrics",
    "register_episode_classifier",
    "run_fewshot",
    "run_paper_protocol",
    "select_shots",
    "split_subjects",
    "write_fewshot_reports",
]

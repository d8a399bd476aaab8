"""The shipped config file and the config's checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from cfer.config import ConfigError, load_config
from cfer.continual import IncrementalConfig

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "incremental.yaml"


def test_shipped_config_file_states_the_defaults() -> None:
    assert load_config(IncrementalConfig, CONFIG) == IncrementalConfig()


def test_default_basic_phase_runs_one_fold() -> None:
    assert IncrementalConfig().basic.fold == 0


def test_unknown_key_names_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="strategies"):
        load_config(IncrementalConfig, overrides=["strategy=[cfer]"])

"""Tests of cfer.config: typed YAML + override loading of dataclass configs."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import pytest
import yaml

from cfer.config import (
    ConfigError,
    config_from_dict,
    config_to_dict,
    load_config,
    check_resumable,
    save_config,
)


class Mode(enum.Enum):
    GROW = "grow"
    LIMIT = "limit"


@dataclass
class OptimConfig:
    lr: float = 1e-4  # learning rate
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class ModelConfig:
    name: Literal["resnet18", "efficientnet_lite0"] = "resnet18"
    pretrained: bool = True
    optim: OptimConfig = field(default_factory=OptimConfig)


@dataclass
class RunConfig:
    seed: int = 0
    classes: tuple[str, ...] = ("happy", "sad")
    output: Optional[Path] = None
    memory_per_class: int | None = 20
    mode: Mode = Mode.GROW
    extra: dict[str, int] = field(default_factory=dict)
    model: ModelConfig = field(default_factory=lambda: ModelConfig(name="efficientnet_lite0"))


@dataclass
class NeedsName:
    name: str
    n_way: int = 5


@dataclass
class Checked:
    n_shot: int = 5

    def __post_init__(self) -> None:
        if self.n_shot < 1:
            raise ValueError(f"n_shot must be positive, got {self.n_shot}")


@dataclass(frozen=True)
class Frozen:
    n_way: int = 5


def write_yaml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_without_file_or_overrides() -> None:
    config = load_config(RunConfig)
    assert config == RunConfig()
    # The nested default from default_factory is kept, not rebuilt from ModelConfig().
    assert config.model.name == "efficientnet_lite0"


def test_file_values_apply_and_nested_sections_keep_their_other_defaults(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "run.yaml", "seed: 3\nmodel:\n  optim:\n    lr: 1e-3\n")
    config = load_config(RunConfig, path)
    assert config.seed == 3
    assert config.model.optim.lr == pytest.approx(1e-3)  # "1e-3" is a str in YAML 1.1
    assert config.model.optim.betas == (0.9, 0.999)
    assert config.model.name == "efficientnet_lite0"


def test_overrides_parse_yaml_values_and_beat_the_file(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "run.yaml", "seed: 3\nmodel: {pretrained: true}\n")
    overrides = [
        "seed=4",
        "model.optim.lr=1e-3",
        "model.pretrained=false",
        "classes=[angry, awed]",
        "output=runs/a",
        "memory_per_class=null",
        "mode=limit",
        "extra={a: 1}",
        "model.optim.betas=[0.5, 0.6]",
    ]
    config = load_config(RunConfig, path, overrides)
    assert config.seed == 4
    assert config.model.optim.lr == pytest.approx(1e-3)
    assert config.model.pretrained is False
    assert config.classes == ("angry", "awed")
    assert config.output == Path("runs/a")
    assert config.memory_per_class is None
    assert config.mode is Mode.LIMIT
    assert config.extra == {"a": 1}
    assert config.model.optim.betas == (0.5, 0.6)


def test_later_overrides_win() -> None:
    assert load_config(RunConfig, overrides=["seed=1", "seed=2"]).seed == 2


def test_unknown_file_key_names_key_file_valid_keys_and_suggestion(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "run.yaml", "model:\n  optim:\n    lrr: 0.1\n")
    with pytest.raises(ConfigError) as error:
        load_config(RunConfig, path)
    message = str(error.value)
    assert "'model.optim.lrr'" in message
    assert f"file {path}" in message
    assert "lr, betas" in message
    assert "did you mean 'model.optim.lr'" in message


def test_unknown_override_key_names_the_override() -> None:
    with pytest.raises(ConfigError, match=r"unknown config key 'sed' \(from override 'sed=1'\).*did you mean 'seed'"):
        load_config(RunConfig, overrides=["sed=1"])
    with pytest.raises(ConfigError, match="'model.nme'.*valid keys of ModelConfig at model: name, pretrained, optim"):
        load_config(RunConfig, overrides=["model.nme=x"])
    with pytest.raises(ConfigError, match="'seed' .* is not a section"):
        load_config(RunConfig, overrides=["seed.x=1"])


def test_malformed_override_and_missing_or_bad_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not of the form key=value"):
        load_config(RunConfig, overrides=["seed"])
    with pytest.raises(ConfigError, match="not of the form key=value"):
        load_config(RunConfig, overrides=["model..lr=1"])
    with pytest.raises(ConfigError, match=r"config file .*absent\.yaml does not exist"):
        load_config(RunConfig, tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="mapping of keys to values at top level"):
        load_config(RunConfig, write_yaml(tmp_path / "list.yaml", "- 1\n- 2\n"))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(RunConfig, write_yaml(tmp_path / "bad.yaml", "seed: [1\n"))
    assert load_config(RunConfig, write_yaml(tmp_path / "empty.yaml", "")) == RunConfig()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("seed=abc", r"'seed' \(from override 'seed=abc'\) expects an integer, got str 'abc'"),
        ("seed=1.5", "expects an integer"),
        ("model.pretrained=1", "expects a boolean"),
        ("model.name=resnet19", r"one of \['resnet18', 'efficientnet_lite0'\].*did you mean 'resnet18'"),
        ("model.optim.betas=[0.9]", "exactly 2 items"),
        ("model.optim.lr=fast", "expects a number"),
        ("classes=happy", "expects a list"),
        ("classes=[1.5]", r"'classes\[0\]'.*expects a string"),
        ("mode=shrink", r"one of \['grow', 'limit'\]"),
        ("seed=null", "make the field Optional"),
        ("memory_per_class=abc", "expects an integer or null, got str 'abc'"),
        ("model=3", "expects a mapping of ModelConfig fields"),
    ],
)
def test_values_are_checked_against_field_types(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(RunConfig, overrides=[override])


def test_numbers_convert_where_unambiguous() -> None:
    config = load_config(RunConfig, overrides=["seed=1e3", "model.optim.lr=1", "classes=[12]"])
    assert config.seed == 1000 and isinstance(config.seed, int)
    assert config.model.optim.lr == 1.0 and isinstance(config.model.optim.lr, float)
    assert config.classes == ("12",)


def test_required_field_must_be_given() -> None:
    with pytest.raises(ConfigError, match="missing required config key 'name' of NeedsName"):
        load_config(NeedsName)
    assert load_config(NeedsName, overrides=["name=x"]).name == "x"


def test_post_init_errors_become_config_errors_with_their_source() -> None:
    with pytest.raises(ConfigError, match=r"invalid Checked \(from override 'n_shot=0'\): n_shot must be positive"):
        load_config(Checked, overrides=["n_shot=0"])


def test_frozen_dataclass_gives_a_frozen_instance() -> None:
    config = load_config(Frozen, overrides=["n_way=3"])
    assert config.n_way == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.n_way = 4  # type: ignore[misc]


def test_inputs_are_never_mutated() -> None:
    overrides = ("model.optim.lr=0.5", "extra={a: 1}")
    first = load_config(RunConfig, overrides=overrides)
    second = load_config(RunConfig)
    assert overrides == ("model.optim.lr=0.5", "extra={a: 1}")
    assert second.model.optim.lr == pytest.approx(1e-4)
    assert second.extra == {}
    assert first.model is not second.model
    data = {"model": {"optim": {"lr": 0.2}}}
    config_from_dict(RunConfig, data)
    assert data == {"model": {"optim": {"lr": 0.2}}}


def test_config_from_dict_checks_like_load_config() -> None:
    assert config_from_dict(RunConfig, {"seed": 9}).seed == 9
    with pytest.raises(ConfigError, match=r"'sede' \(from cli\)"):
        config_from_dict(RunConfig, {"sede": 9}, source="cli")


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)
    with pytest.raises(ConfigError, match="dataclass type"):
        load_config(dict)  # type: ignore[arg-type]


def test_config_to_dict_is_plain_yaml(tmp_path: Path) -> None:
    config = load_config(RunConfig, overrides=["output=runs/a", "mode=limit"])
    data = config_to_dict(config)
    assert data["classes"] == ["happy", "sad"]
    assert data["output"] == "runs/a"
    assert data["mode"] == "limit"
    assert data["model"]["optim"] == {"lr": 1e-4, "betas": [0.9, 0.999]}
    assert yaml.safe_load(yaml.safe_dump(data)) == data
    with pytest.raises(ConfigError, match="dataclass instance"):
        config_to_dict(RunConfig)


def test_save_then_load_round_trips(tmp_path: Path) -> None:
    config = load_config(
        RunConfig,
        overrides=["seed=7", "output=runs/b", "model.optim.lr=3e-5", "extra={k: 2}", "memory_per_class=null"],
    )
    path = save_config(config, tmp_path / "runs" / "config.yaml")
    assert load_config(RunConfig, path) == config
    assert [p.name for p in path.parent.iterdir()] == ["config.yaml"]  # no temp file left


@pytest.mark.parametrize(
    ("name", "dataclass_path"),
    [("basic_cfee.yaml", "cfer.training.basic.BasicPhaseConfig"),
     ("incremental.yaml", "cfer.continual.IncrementalConfig"),
     ("incremental_rafdb.yaml", "cfer.continual.IncrementalConfig"),
     ("incremental_affect.yaml", "cfer.continual.IncrementalConfig")],
)
def test_shipped_presets_load(name: str, dataclass_path: str) -> None:
    import importlib
    from pathlib import Path

    from cfer.config import load_config

    module, _, attribute = dataclass_path.rpartition(".")
    config = load_config(getattr(importlib.import_module(module), attribute),
                         Path(__file__).parents[1] / "configs" / name)
    assert config is not None


def test_a_run_started_before_a_setting_existed_resumes_with_its_default(tmp_path: Path) -> None:
    from cfer.fewshot import FewShotConfig

    config = FewShotConfig()
    save_config(config, tmp_path / "config.yaml")
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    del saved["data"]["compound_deviation"], saved["basic"]["data"]["compound_deviation"]  # an older version's file
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved))
    check_resumable(config, tmp_path)  # the missing keys take their defaults
    changed = dataclasses.replace(config, data=dataclasses.replace(config.data, compound_deviation=0.5))
    with pytest.raises(ValueError, match=r"different settings \(data\)"):
        check_resumable(changed, tmp_path)

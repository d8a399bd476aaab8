"""``cfer fewshot``'s flags: --protocol, --methods and --reference-run become the right settings."""

from __future__ import annotations

import pytest

from cfer import fewshot
from cfer.cli import main


@pytest.fixture
def captured(monkeypatch):
    configs = []

    def fake_run(config, out_dir):
        configs.append(config)
        return {"wall_seconds": 0.0, "out_dir": str(out_dir), "evaluated_on": config.evaluate_on}

    monkeypatch.setattr(fewshot, "run_fewshot", fake_run)
    return configs


def test_protocol_methods_and_references_map_to_their_keys(captured, tmp_path, capsys):
    status = main(["fewshot", "--out", str(tmp_path), "--protocol", "fscil", "--methods", "imprint, teen",
                   "--reference-run", "runs/a", "--reference-run", "runs/b", "--evaluate-on", "validation"])
    assert status == 0
    (config,) = captured
    assert config.fscil.enabled and not config.paper.enabled and not config.episodic.enabled
    assert config.methods == ["imprint", "teen"]
    assert config.fscil.reference_runs == ["runs/a", "runs/b"]
    assert config.evaluate_on == "validation"
    assert "wall time" in capsys.readouterr().out


def test_every_protocol_runs_by_default_and_skip_flags_still_work(captured, tmp_path):
    main(["fewshot", "--out", str(tmp_path)])
    main(["fewshot", "--out", str(tmp_path), "--protocol", "all", "--skip-episodic"])
    default, skipped = captured
    assert default.fscil.enabled and default.paper.enabled and default.episodic.enabled
    assert skipped.fscil.enabled and skipped.paper.enabled and not skipped.episodic.enabled


def test_an_unknown_protocol_is_a_usage_error(captured, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["fewshot", "--out", str(tmp_path), "--protocol", "fscil,sessions"])
    assert "unknown protocol" in capsys.readouterr().err and not captured

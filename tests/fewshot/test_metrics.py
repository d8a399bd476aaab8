"""FSCIL metrics against hand computations: per session, over a run, over runs."""

from __future__ import annotations

import math

import pytest
import torch

from cfer.fewshot import harmonic_mean, performance_drop, session_scores, summarize_runs


def test_session_scores_by_hand():
    # outputs 0, 1 base; 2, 3 new. Class 0: 2 of 2 right; class 1: 1 of 2; class 2: 1 of 2; class 3: 0 of 2
    targets = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    predictions = torch.tensor([0, 0, 1, 2, 2, 0, 2, 1])
    scores = session_scores(predictions, targets, num_base=2, num_seen=4, session=2)
    assert scores["accuracy"] == pytest.approx(4 / 8)
    assert scores["base_accuracy"] == pytest.approx((1.0 + 0.5) / 2)
    assert scores["novel_accuracy"] == pytest.approx((0.5 + 0.0) / 2)
    assert scores["harmonic_mean"] == pytest.approx(2 * 0.75 * 0.25 / (0.75 + 0.25))
    assert scores["session"] == 2 and scores["classes_seen"] == 4


def test_mean_recalls_weigh_classes_equally_whatever_their_image_counts():
    targets = torch.tensor([0, 0, 0, 0, 1, 2])
    predictions = torch.tensor([0, 0, 0, 0, 0, 2])
    scores = session_scores(predictions, targets, num_base=2, num_seen=3, session=1)
    assert scores["base_accuracy"] == pytest.approx(0.5)  # class 0: 1.0, class 1: 0.0
    assert scores["accuracy"] == pytest.approx(5 / 6)


def test_base_session_has_no_novel_figures_and_targets_are_checked():
    scores = session_scores(torch.tensor([0, 1]), torch.tensor([0, 0]), num_base=2, num_seen=2, session=0)
    assert scores["novel_accuracy"] is None and scores["harmonic_mean"] is None
    assert scores["base_accuracy"] == pytest.approx(0.5)  # class 1 has no image: left out
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        session_scores(torch.tensor([0]), torch.tensor([2]), num_base=2, num_seen=2, session=0)


def test_harmonic_mean_and_performance_drop():
    assert harmonic_mean(0.6, 0.2) == pytest.approx(0.3)
    assert harmonic_mean(0.0, 0.0) == 0.0 and harmonic_mean(1.0, 0.0) == 0.0
    assert performance_drop([0.8, 0.5, 0.3]) == pytest.approx(0.5)


def scores(session: int, accuracy: float, base: float, novel: float | None) -> dict:
    return {"session": session, "classes_seen": 2 + session, "accuracy": accuracy, "base_accuracy": base,
            "novel_accuracy": novel, "harmonic_mean": None if novel is None else harmonic_mean(base, novel)}


def test_summary_over_runs_by_hand():
    runs = [
        [scores(0, 0.8, 0.8, None), scores(1, 0.6, 0.7, 0.4)],
        [scores(0, 0.8, 0.8, None), scores(1, 0.4, 0.5, 0.2)],
    ]
    summary = summarize_runs(runs)
    assert summary["final_accuracy"]["mean"] == pytest.approx(0.5)
    assert summary["final_accuracy"]["ci95"] == pytest.approx(1.96 * math.sqrt(0.02) / math.sqrt(2))
    assert summary["performance_drop"]["mean"] == pytest.approx(0.3)  # drops of 0.2 and 0.4
    assert summary["average_accuracy"]["mean"] == pytest.approx((0.7 + 0.6) / 2)
    assert summary["final_harmonic_mean"]["mean"] == pytest.approx((harmonic_mean(0.7, 0.4) + harmonic_mean(0.5, 0.2)) / 2)
    assert summary["final_novel_accuracy"]["mean"] == pytest.approx(0.3)
    assert "novel_accuracy" not in summary["per_session"][0]  # undefined after the base session
    assert summary["per_session"][1]["base_accuracy"]["mean"] == pytest.approx(0.6)
    assert summary["per_session"][0]["accuracy"] == {"mean": pytest.approx(0.8), "ci95": 0.0, "n": 2}
    with pytest.raises(ValueError):
        summarize_runs([runs[0], runs[1][:1]])

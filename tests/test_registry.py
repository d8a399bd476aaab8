"""The one registry type: lookups, registration, and the error for an unknown name."""

from __future__ import annotations

import pytest

from cfer.registry import Registry


def test_register_directly_and_as_a_decorator() -> None:
    registry: Registry[object] = Registry("widget")
    registry.register("a", 1)

    @registry.register("b")
    def make_b() -> str:
        return "b"

    assert registry["a"] == 1 and registry["b"] is make_b and make_b() == "b"
    assert list(registry) == ["a", "b"] and len(registry) == 2 and "a" in registry and "c" not in registry


def test_unknown_name_lists_the_known_ones_and_duplicates_are_refused() -> None:
    registry: Registry[int] = Registry("strategy")
    registry.register("cfer", 1)
    registry.register("naive", 2)
    with pytest.raises(KeyError, match=r"unknown strategy 'der'; known strategies: \['cfer', 'naive'\]"):
        registry["der"]
    with pytest.raises(ValueError, match="already registered"):
        registry.register("cfer", 3)


def test_names_are_normalised_on_both_sides() -> None:
    registry: Registry[int] = Registry("CAM method", normalize=lambda name: name.lower().replace("-", ""))
    registry.register("Grad-CAM", 1)
    assert registry["gradcam"] == registry["GRAD-CAM"] == 1
    assert registry.key("GradCAM") == "gradcam"
    with pytest.raises(KeyError, match="known CAM methods"):
        registry.key("score")

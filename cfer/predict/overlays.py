"""Class activation maps of predicted faces: ``cfer predict --cam METHOD`` writes one overlay PNG per face.

The map explains the class the face was labelled with, on the very crop the model classified, with
a method of :data:`cfer.cam.CAM_METHODS` through :class:`cfer.cam.CamExplainer` (whose hooks are
released when the ``with`` block ends). The target layer is found as ``cfer gradcam`` finds it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import numpy as np
import torch
from PIL import Image

from cfer.io import atomic_write_bytes
from cfer.predict.loading import LoadedClassifier
from cfer.predict.predictor import FacePrediction

__all__ = ["FaceCams"]


class FaceCams:
    """Writes a CAM overlay of each face for its predicted class.

    Args:
        classifier: A loaded cfer checkpoint (an exported file has no PyTorch model to explain).
        method: A CAM method name, e.g. ``"gradcam"``.
        out_dir: Where the PNGs go.
        display_size: Side of each overlay, in pixels.

    Raises:
        ValueError: If ``classifier`` has no PyTorch model.
        KeyError: If ``method`` is unknown; the message lists the known ones.
    """

    def __init__(self, classifier: LoadedClassifier, method: str, out_dir: str | Path, display_size: int = 192) -> None:
        from cfer.cam import CamExplainer, GradCamConfig  # pytorch-grad-cam is only imported when maps are asked for

        if classifier.model is None:
            raise ValueError(f"--cam needs the PyTorch model of a cfer checkpoint; {classifier.source} is an exported "
                             "file (pass the checkpoint or run directory it was exported from)")
        spec = classifier.spec
        self._explainer = CamExplainer(classifier.model, spec.class_names, method, preprocess=spec.normalise,
                                       input_size=spec.input_size, min_map_size=GradCamConfig.min_map_size)
        self.out_dir, self.display_size = Path(out_dir), display_size

    def write(self, faces: Sequence[FacePrediction], stem: str) -> list[Path]:
        """Overlays of ``faces`` (which must carry their crops), as ``OUT/<stem>_face<k>.png``.

        Returns:
            The files written, one per face.
        """
        from cfer.cam import overlay

        if not faces:
            return []
        crops = torch.from_numpy(np.stack([face.crop for face in faces])).permute(0, 3, 1, 2).contiguous()
        maps = self._explainer(crops, [face.label for face in faces])
        paths = []
        for index, (crop, cam) in enumerate(zip(crops, maps)):
            buffer = io.BytesIO()
            Image.fromarray(overlay(crop, cam, self.display_size)).save(buffer, format="PNG")
            paths.append(atomic_write_bytes(self.out_dir / f"{stem}_face{index}.png", buffer.getvalue()))
        return paths

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc_value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._explainer.close()

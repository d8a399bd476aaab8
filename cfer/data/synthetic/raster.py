"""Batched, anti-aliased 2-D primitives for the procedural face renderer.

Every primitive works on a batch of per-image coordinate grids ``x, y`` of shape (B, H, W), in the
face's own frame, and returns a coverage mask in [0, 1] of the same shape. Per-image parameters are
arrays of shape (B, 1, 1) (or scalars) so that one NumPy call draws the part on every image.

Only ``+ - * /``, ``sqrt`` and clipping touch pixels: IEEE 754 rounds those exactly, so the same
parameters give the same bytes on any machine, which transcendental functions would not promise.
"""

from __future__ import annotations

import numpy as np

Array = np.ndarray


def ramp(signed_distance: Array, pixel: float) -> Array:
    """Coverage of a half-plane whose signed distance (positive inside) is given.

    Args:
        signed_distance: Distance to the edge in face units, positive inside. Any shape.
        pixel: Size of one pixel in face units; the edge is blurred over one pixel.

    Returns:
        Coverage in [0, 1], same shape.
    """
    return np.clip(signed_distance * (1.0 / pixel) + 0.5, 0.0, 1.0)


def ellipse(x: Array, y: Array, cx, cy, rx, ry, pixel: float) -> Array:
    """Filled axis-aligned ellipse.

    The signed distance is approximated by ``(1 - r) * min(rx, ry)`` with ``r`` the normalised
    radius, which is exact on the short axis and good enough to anti-alias elsewhere.
    """
    dx = (x - cx) / rx
    dy = (y - cy) / ry
    radius = np.sqrt(dx * dx + dy * dy)
    return ramp((1.0 - radius) * np.minimum(rx, ry), pixel)


def band(x: Array, y: Array, x0, x1, y_of_t, half_thickness, pixel: float) -> Array:
    """A horizontal stroke that follows a curve ``y = y_of_t(t)`` for ``t`` in [0, 1].

    ``t`` runs linearly from ``x0`` to ``x1`` (either order). The stroke's ends are cut square.

    Args:
        x, y: Coordinate grids (B, H, W).
        x0, x1: Horizontal extent of the stroke, (B, 1, 1) or scalars.
        y_of_t: Callable mapping the parameter grid ``t`` (B, H, W) to the curve's height.
        half_thickness: Half the stroke's thickness, (B, 1, 1), scalar, or a callable of ``t``.
        pixel: Pixel size in face units.

    Returns:
        Coverage (B, H, W).
    """
    t = (x - x0) / (x1 - x0)
    thickness = half_thickness(t) if callable(half_thickness) else half_thickness
    across = ramp(thickness - np.abs(y - y_of_t(t)), pixel)
    span = np.abs(x1 - x0)
    along = ramp(np.minimum(t, 1.0 - t) * span, pixel)
    return across * along


def vertical_band(x: Array, y: Array, cx, y0, y1, half_thickness, pixel: float) -> Array:
    """A straight vertical stroke from ``y0`` to ``y1`` (y0 < y1) centred on ``cx``."""
    across = ramp(half_thickness - np.abs(x - cx), pixel)
    along = ramp(np.minimum(y - y0, y1 - y), pixel)
    return across * along


def between(y: Array, upper, lower, pixel: float) -> Array:
    """Coverage of ``upper < y < lower`` (image y grows downwards)."""
    return ramp(np.minimum(y - upper, lower - y), pixel)


def paint(canvas: Array, mask: Array, color: Array) -> None:
    """Alpha-composite a colour over ``canvas`` in place.

    Args:
        canvas: (B, 3, H, W) float image.
        mask: (B, H, W) coverage.
        color: (B, 3) or (3,) RGB in [0, 1].
    """
    color = np.asarray(color, dtype=canvas.dtype)
    if color.ndim == 1:
        color = color[None]
    delta = color[:, :, None, None] - canvas
    delta *= mask[:, None]
    canvas += delta


def shade(canvas: Array, mask: Array, strength) -> None:
    """Darken (strength > 0) or lighten (strength < 0) ``canvas`` in place where ``mask`` covers.

    Args:
        canvas: (B, 3, H, W) float image.
        mask: (B, H, W) coverage.
        strength: Scalar or (B, 1, 1) fraction of the brightness removed.
    """
    canvas *= (1.0 - mask * strength)[:, None]

"""decode_image: every image mode converted to RGB, and every bad file refused with its reason."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cfer.data.images import BadImageError, decode_image, display_path, is_animated, is_image_file

RNG = np.random.default_rng(0)
PIXELS = RNG.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)


def _saved(path: Path, image: Image.Image, **options) -> Path:
    image.save(path, **options)
    return path


def test_rgb_png_is_read_exactly(tmp_path: Path) -> None:
    path = _saved(tmp_path / "a.png", Image.fromarray(PIXELS))
    assert np.array_equal(decode_image(path), PIXELS)


def test_grayscale_is_repeated_into_three_channels(tmp_path: Path) -> None:
    gray = PIXELS[..., 0]
    decoded = decode_image(_saved(tmp_path / "g.png", Image.fromarray(gray, mode="L")))
    assert decoded.shape == (20, 30, 3)
    assert all(np.array_equal(decoded[..., channel], gray) for channel in range(3))


def test_rgba_drops_alpha_and_keeps_the_colours(tmp_path: Path) -> None:
    rgba = np.dstack([PIXELS, np.full((20, 30), 7, dtype=np.uint8)])
    decoded = decode_image(_saved(tmp_path / "a.png", Image.fromarray(rgba, mode="RGBA")))
    assert np.array_equal(decoded, PIXELS)


def test_cmyk_jpeg_is_converted_to_rgb(tmp_path: Path) -> None:
    flat = np.zeros((16, 16, 3), dtype=np.uint8)
    flat[..., 0] = 200  # a red square: CMYK (0, 200, 200, 55)
    path = _saved(tmp_path / "c.jpg", Image.fromarray(flat).convert("CMYK"), quality=100)
    assert Image.open(path).mode == "CMYK"
    decoded = decode_image(path).astype(int)
    assert np.abs(decoded - flat).max() <= 3


def test_sixteen_bit_grayscale_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    path = _saved(tmp_path / "s.png", Image.fromarray(values))
    assert Image.open(path).mode.startswith("I")
    decoded = decode_image(path)
    assert decoded[0, :, 0].tolist() == [0, 100, 255]


def test_palette_image_is_expanded(tmp_path: Path) -> None:
    path = _saved(tmp_path / "p.png", Image.fromarray(PIXELS).convert("P"))
    assert decode_image(path).shape == (20, 30, 3)


def test_size_center_crops_then_resizes(tmp_path: Path) -> None:
    assert decode_image(_saved(tmp_path / "a.png", Image.fromarray(PIXELS)), size=8).shape == (8, 8, 3)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty file"),
        (b"label,path\nhappy,x.jpg\n", "not an image"),
    ],
)
def test_empty_and_text_files_are_refused(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "fake.jpg"
    path.write_bytes(content)
    with pytest.raises(BadImageError, match=reason) as caught:
        decode_image(path)
    assert caught.value.path == str(path)


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_truncated_files_are_refused(tmp_path: Path, suffix: str) -> None:
    path = _saved(tmp_path / f"whole{suffix}", Image.fromarray(PIXELS))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadImageError, match="truncated or corrupt"):
        decode_image(path)


def test_a_12000_pixel_jpeg_loads_at_reduced_scale(tmp_path: Path) -> None:
    path = _saved(tmp_path / "huge.jpg", Image.new("L", (12000, 12000), 128), quality=50)
    decoded = decode_image(path, size=64)
    assert decoded.shape == (64, 64, 3) and int(decoded.mean()) == 128


def test_a_12000_pixel_png_is_refused_clearly(tmp_path: Path) -> None:
    path = _saved(tmp_path / "huge.png", Image.new("1", (12000, 12000)))
    with pytest.raises(BadImageError, match=r"12000x12000 pixels is over the limit .*max_image_pixels"):
        decode_image(path, size=64)
    assert decode_image(path, size=16, max_pixels=200_000_000).shape == (16, 16, 3)


def test_a_file_name_that_is_not_utf8_loads_and_displays(tmp_path: Path) -> None:
    path = Path(os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9.png"))  # Latin-1 bytes, not UTF-8
    Image.fromarray(PIXELS).save(path, format="PNG")
    assert np.array_equal(decode_image(path), PIXELS)
    assert display_path(path).endswith("caf\\xe9.png")


def test_sixteen_bit_rgb_png_keeps_its_colours(tmp_path: Path) -> None:
    import cv2

    bgr = np.zeros((4, 4, 3), dtype=np.uint16)
    bgr[..., 2], bgr[..., 1] = 65535, 257 * 100  # red full, green at 100/255
    cv2.imwrite(str(tmp_path / "rgb16.png"), bgr)
    assert decode_image(tmp_path / "rgb16.png")[0, 0].tolist() == [255, 100, 0]


@pytest.mark.parametrize("suffix", [".gif", ".webp", ".tiff", ".tif", ".bmp"])
def test_every_format_pil_reads_is_an_image(tmp_path: Path, suffix: str) -> None:
    pixels = np.zeros((16, 16, 3), np.uint8)
    pixels[:8] = (200, 40, 40)  # two flat colours: lossless in a palette and in lossless WebP
    path = tmp_path / f"face{suffix}"
    Image.fromarray(pixels).save(path, **({"lossless": True} if suffix == ".webp" else {}))
    assert is_image_file(path)
    np.testing.assert_array_equal(decode_image(path), pixels)


def test_an_animated_gif_gives_its_first_frame_and_says_it_is_animated(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((250, 0, 0), (0, 250, 0), (0, 0, 250))]
    path = tmp_path / "clip.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=40)
    assert is_animated(path) and not is_animated(tmp_path / "missing.gif")
    assert tuple(decode_image(path)[0, 0]) == (250, 0, 0)
    frames[0].save(tmp_path / "still.gif")
    assert not is_animated(tmp_path / "still.gif")


def test_a_palette_gif_with_transparency_loads_without_a_warning(tmp_path: Path, recwarn) -> None:
    image = Image.new("P", (8, 8), 1)
    image.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    image.info["transparency"] = 0
    image.save(tmp_path / "t.gif", transparency=0)
    assert tuple(decode_image(tmp_path / "t.gif")[0, 0]) == (10, 200, 30)
    assert not [w for w in recwarn if "Transparency" in str(w.message)]

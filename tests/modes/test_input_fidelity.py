"""Inputs are never silently destroyed: real pixel ranges, EXIF orientation, decompression
bombs as one-line per-input errors, and a ``.npy`` read in the mode its model calls for."""

from __future__ import annotations

import json
import logging
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rex_stream import explain_sync
from rex_stream.adapters.python import PythonBackend
from rex_stream.errors import InputError
from rex_stream.result import Explanation

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "rex_stream" / "data" / "models"
CHEAP = {"iters": 1, "seed": 0, "extract": False, "min_box_size": 4}


def loaded(path: Path, model: Path | PythonBackend, **overrides: object) -> Explanation:
    """Explain ``path`` cheaply (one iteration, no extraction): what matters is the input."""
    backend = model if isinstance(model, PythonBackend) else str(model)
    return explain_sync(path, backend, **{**CHEAP, **overrides})


def write_png(path: Path, width: int, height: int, bit_depth: int, rows: bytes) -> None:
    """A greyscale PNG written by hand (Pillow cannot write every header we need)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def test_sixteen_bit_png_keeps_its_range(patch_model: Path, tmp_path: Path) -> None:
    """A 16-bit greyscale PNG is read as value / 65535 (Pillow's convert would clip it white)."""
    values = np.tile(np.linspace(0, 65535, 24).astype(np.uint16), (24, 1))
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in values)
    write_png(tmp_path / "deep.png", 24, 24, 16, rows)
    tensor = loaded(tmp_path / "deep.png", patch_model).subject.tensor[0]
    np.testing.assert_allclose(tensor, values / 65535.0, atol=1e-5)
    # resized to the model's 24 × 24 on the way, by value, not clipped
    large = np.full((48, 48), 40000, np.uint16)
    large[:, 24:] = 10000
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in large)
    write_png(tmp_path / "large.png", 48, 48, 16, rows)
    tensor = loaded(tmp_path / "large.png", patch_model).subject.tensor[0]
    np.testing.assert_allclose(tensor[:, :10], 40000 / 65535.0, atol=1e-4)
    np.testing.assert_allclose(tensor[:, 14:], 10000 / 65535.0, atol=1e-4)


def test_float_tiff_in_unit_range_is_kept(patch_model: Path, tmp_path: Path) -> None:
    values = np.random.default_rng(0).random((24, 24), dtype=np.float32)
    Image.fromarray(values).save(tmp_path / "unit.tif")
    tensor = loaded(tmp_path / "unit.tif", patch_model).subject.tensor[0]
    np.testing.assert_allclose(tensor, values, atol=1e-6)


@pytest.mark.parametrize(
    ("low", "high", "expected", "warning"),
    [
        (0.0, 200.0, lambda v: v / 255.0, "ambiguous"),
        (-1.0, 1.0, lambda v: (v + 1.0) / 2.0, "stretched"),
    ],
)
def test_other_float_ranges_are_scaled_with_a_warning(
    patch_model: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    low: float,
    high: float,
    expected,  # type: ignore[no-untyped-def]
    warning: str,
) -> None:
    values = np.linspace(low, high, 24 * 24, dtype=np.float32).reshape(24, 24)
    Image.fromarray(values).save(tmp_path / "wide.tif")
    with caplog.at_level(logging.WARNING):
        tensor = loaded(tmp_path / "wide.tif", patch_model).subject.tensor[0]
    np.testing.assert_allclose(tensor, expected(values), atol=1e-5)
    assert warning in caplog.text and "wide.tif" in caplog.text


def test_rgb_model_gets_a_sixteen_bit_grey_image_on_every_channel(
    tiny_cnn: Path, tmp_path: Path
) -> None:
    values = np.full((32, 32), 32768, np.uint16)
    write_png(
        tmp_path / "grey.png",
        32,
        32,
        16,
        b"".join(b"\x00" + r.astype(">u2").tobytes() for r in values),
    )
    explanation = loaded(tmp_path / "grey.png", tiny_cnn)
    np.testing.assert_allclose(explanation.subject.tensor, 32768 / 65535.0, atol=1e-5)
    assert explanation.subject.display is not None
    assert explanation.subject.display.shape == (32, 32, 3)
    assert int(explanation.subject.display.max()) == 128


def test_exif_orientation_is_honoured(patch_model: Path, tmp_path: Path) -> None:
    """Stored 48 wide × 24 high with its left half bright; EXIF orientation 6 (rotate 90°
    clockwise to display) puts the bright half on top."""
    stored = np.zeros((24, 48), np.uint8)
    stored[:, :24] = 250
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    tensor = loaded(tmp_path / "phone.jpg", patch_model).subject.tensor[0]
    assert tensor[:12].mean() > 0.9 and tensor[12:].mean() < 0.1


def test_decompression_bomb_is_a_one_line_input_error(patch_model: Path, tmp_path: Path) -> None:
    write_png(tmp_path / "bomb.png", 20000, 20000, 8, b"\x00" * 3)
    with pytest.raises(InputError, match="decompression bomb") as caught:
        loaded(tmp_path / "bomb.png", patch_model)
    assert "\n" not in str(caught.value)
    # over Pillow's warning limit (89 M pixels) but under its error limit: refused as well
    write_png(tmp_path / "large.png", 10000, 10000, 8, b"\x00" * 3)
    with pytest.raises(InputError, match="decompression bomb"):
        loaded(tmp_path / "large.png", patch_model)


def test_directory_run_goes_on_past_a_bomb(
    tiny_cnn: Path, tiny_image: Path, tmp_path: Path
) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "good.png").write_bytes(tiny_image.read_bytes())
    write_png(inputs / "bomb.png", 20000, 20000, 8, b"\x00" * 3)
    arguments = ["--model", str(tiny_cnn), "--iters", "1", "--json", "--output", str(tmp_path)]
    out = subprocess.run(
        [sys.executable, "-m", "rex_stream.cli", str(inputs), *arguments],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr
    bomb_lines = [line for line in out.stderr.splitlines() if "decompression bomb" in line]
    assert len(bomb_lines) == 1 and "bomb.png" in bomb_lines[0]
    summaries = json.loads(out.stdout)
    assert len(summaries) == 2 and sum("error" in s for s in summaries) == 1


def test_npy_image_tensor_is_an_image(tiny_cnn: Path, tmp_path: Path) -> None:
    """A (3, 32, 32) tensor for a (3, 32, 32) model is an image, not a volume."""
    tensor = np.random.default_rng(1).random((3, 32, 32), dtype=np.float32)
    np.save(tmp_path / "tensor.npy", tensor)
    explanation = loaded(tmp_path / "tensor.npy", tiny_cnn)
    assert explanation.subject.mode == "RGB"
    assert explanation.subject.spatial_axes == (1, 2)
    np.testing.assert_array_equal(explanation.subject.tensor, tensor)


def test_npy_table_row_is_a_table_row(tmp_path: Path) -> None:
    """A 30-value row for the 30-feature tabular model is a table row, not a spectrum."""
    rows = np.loadtxt(MODELS / "tabular-breast-cancer-test.csv", delimiter=",", skiprows=1)
    np.save(tmp_path / "row.npy", rows[0, :30])
    explanation = loaded(tmp_path / "row.npy", MODELS / "tabular-breast-cancer.onnx")
    assert explanation.subject.mode == "tabular"


def test_npy_spectrum_and_volume(tmp_path: Path) -> None:
    spectrum = loaded(MODELS / "spectral-markers-A.npy", MODELS / "spectral-markers.onnx")
    assert spectrum.subject.mode == "spectral"
    np.save(tmp_path / "volume.npy", np.zeros((32, 32, 32), np.float32))
    volume = loaded(tmp_path / "volume.npy", MODELS / "voxel-blob32.onnx")
    assert volume.subject.mode == "voxel"


def test_ambiguous_npy_asks_for_mode(tmp_path: Path) -> None:
    """100 values for a 100-wide model could be a row or a spectrum: ``--mode`` decides."""
    model = PythonBackend(lambda batch: batch[:, :2], (100,))
    np.save(tmp_path / "hundred.npy", np.linspace(0, 1, 100))
    with pytest.raises(InputError, match="--mode tabular or --mode spectral") as caught:
        loaded(tmp_path / "hundred.npy", model)
    assert "\n" not in str(caught.value)
    assert loaded(tmp_path / "hundred.npy", model, mode="spectral").subject.mode == "spectral"
    assert loaded(tmp_path / "hundred.npy", model, mode="tabular").subject.mode == "tabular"

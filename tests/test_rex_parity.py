"""ReX 0.4.1 itself (its venv: REX_STREAM_REX_PYTHON) against rex-stream on the same ONNX model
and picture: the options that must mean the same in both."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.cli.test_cli import rex

REX_PYTHON = os.environ.get("REX_STREAM_REX_PYTHON")
needs_rex = pytest.mark.skipif(
    not REX_PYTHON, reason="REX_STREAM_REX_PYTHON (a ReX 0.4.1 venv) is not set"
)

#: Runs ReX's command line once per config file, in one process (torch is imported once).
REX_RUNS = """
import sys
from rex_xai.rex_wrapper import main
image, model, *configs = sys.argv[1:]
for config in configs:
    sys.argv = ["ReX", image, "--model", model, "-c", config, "-vv", "-n"]
    main()
"""


@needs_rex
def test_per_iteration_mask_values_are_rex_values(
    tiny_cnn: Path, tiny_image: Path, tmp_path: Path
) -> None:
    """``mask_value = random`` (seeded) and ``linear``: ReX logs each iteration's value
    ("using 0.788 for process 1"); rex-stream uses the same ones, in the same order."""
    configs = []
    for kind in ("random", "linear"):
        path = tmp_path / f"{kind}.toml"
        path.write_text(
            f'[rex]\nmask_value = "{kind}"\nseed = 7\ngpu = false\n'
            "[causal]\niters = 4\nmin_box_size = 4\n"
        )
        configs.append(path)
    ran = subprocess.run(
        [str(REX_PYTHON), "-c", REX_RUNS, str(tiny_image), str(tiny_cnn), *map(str, configs)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    text = ran.stdout + ran.stderr  # ReX logs to stdout
    logged = [float(v) for v in re.findall(r"using (-?[\d.]+) for process \d+", text)]
    assert len(logged) == 8
    for number, config in enumerate(configs):
        out = rex(str(tiny_image), "--model", str(tiny_cnn), "-c", str(config), "-n", "--json")
        assert out.returncode == 0, out.stderr
        ours = json.loads(out.stdout)["mask_values"]
        assert ours == pytest.approx(logged[4 * number : 4 * number + 4], abs=5e-4)

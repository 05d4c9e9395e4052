"""An adversarial sweep of the command line: every bad input is one ``rex-stream: error:`` line.

Each case calls the console entry point ``rex_stream.cli.main.main`` in this process (fast:
no interpreter start per case) and checks what a user would see: a non-zero exit, exactly one
line on stderr that starts with ``rex-stream: error:`` and names what was wrong, no traceback,
and no warning or log record beside it. Store cases also check that the data already in the
store is untouched.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from rex_stream.cli.main import main

MODELS = Path(__file__).resolve().parents[2] / "rex_stream" / "data" / "models"

#: A module of misbehaving model and explainer functions, imported from the working directory.
FUNCTIONS = """
import numpy as np
input_shape = (3, 32, 32)
def raises(batch):
    raise RuntimeError("boom")
def wrong_shape(batch):
    return np.zeros((len(batch), 10, 2), np.float32)
def fine(batch):
    return np.linspace(0, 1, 10)[None].repeat(len(batch), 0)
def explainer_raises(x, target):
    raise ValueError("explode")
def explainer_nan(x, target):
    return np.full(x.shape[-2:], np.nan)
"""


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory, tiny_image: Path) -> dict[str, Path]:
    """Broken and misleading files, one of each kind."""
    folder = tmp_path_factory.mktemp("bad")
    files = {"dir": folder / "a-directory", "missing_dir": folder / "missing" / "x"}
    files["dir"].mkdir()
    (folder / "empty.npy").write_bytes(b"")
    files["empty_npy"] = folder / "empty.npy"
    files["map"] = folder / "map.npy"
    np.save(files["map"], np.random.default_rng(1).random((32, 32)).astype(np.float32))
    files["nan_map"] = folder / "nan_map.npy"
    np.save(files["nan_map"], np.full((32, 32), np.nan, np.float32))
    files["png"] = tiny_image
    files["no_suffix"] = folder / "no-suffix"
    files["no_suffix"].write_bytes(tiny_image.read_bytes())
    (folder / "rexbad_functions.py").write_text(FUNCTIONS)
    files["functions"] = folder
    return files


def one_line_error(
    argv: list[str],
    needle: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> str:
    """Run the CLI with ``argv``; assert one error line containing ``needle``; return it."""
    caplog.set_level(logging.WARNING)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            code = main(argv)
        except SystemExit as exit_:  # argparse, like the console script, exits
            code = exit_.code if isinstance(exit_.code, int) else 1
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code != 0, err
    assert "Traceback" not in err
    assert len(lines) == 1, err
    assert lines[0].startswith("rex-stream: error:"), err
    assert needle in lines[0], lines[0]
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [str(w.message) for w in caught if issubclass(w.category, SHOWN_WARNINGS)]
    return lines[0]


#: Warnings Python shows a user by default (ResourceWarning and deprecations it does not).
SHOWN_WARNINGS = (UserWarning, RuntimeWarning, SyntaxWarning, BytesWarning, UnicodeWarning)

Case = Callable[[dict[str, Path], Path, Path], list[str]]


#: name → (arguments from (bad files, model, picture), what the one line must say)
CASES: dict[str, tuple[Case, str]] = {
    # a typo on the command line: one line, not the usage block
    "not a number": (lambda b, m, p: [str(p), "--model", str(m), "--iters", "abc"], "--iters"),
    "unknown choice": (lambda b, m, p: [str(p), "--model", str(m), "-s", "foo"], "--strategy"),
    "negative-looking value": (
        lambda b, m, p: [str(p), "--model", str(m), "--stds", "-1,1,1"],
        "--stds",
    ),
    "evaluate typo": (
        lambda b, m, p: ["evaluate", str(p), "--model", str(m), "--seed", "x"],
        "evaluate: argument --seed",
    ),
    "evaluate bad --meta": (
        lambda b, m, p: ["evaluate", str(p), "--model", str(m), "--meta", "foo"],
        "--meta",
    ),
    "cem bad --kind": (lambda b, m, p: ["cem", str(p), "--model", str(m), "--kind", "x"], "--kind"),
    "cem takes no --iters": (
        lambda b, m, p: [str(p), "--method", "cem-pp", "--model", str(m), "--iters", "3"],
        "--iters",
    ),
    "l2x-train without --out": (
        lambda b, m, p: ["l2x-train", str(b["dir"]), "--model", str(m)],
        "--out",
    ),
    "l2x without --explainer": (lambda b, m, p: ["l2x", str(p)], "--explainer"),
    # empty files (np.load raises EOFError on them)
    "a file without suffix": (
        lambda b, m, p: [str(b["no_suffix"]), "--model", str(m)],
        ".nii, .npy, .ogg",  # each suffix once
    ),
    "empty .npy input": (lambda b, m, p: [str(b["empty_npy"]), "--model", str(m)], "empty.npy"),
    "empty .npy input to cem": (
        lambda b, m, p: ["cem", str(b["empty_npy"]), "--model", str(m)],
        "empty.npy",
    ),
    "empty .npy input to evaluate": (
        lambda b, m, p: [
            "evaluate",
            str(b["empty_npy"]),
            "--model",
            str(m),
            "--attribution",
            str(b["map"]),
            "--metrics",
            "sparseness",
        ],
        "empty.npy",
    ),
    "empty .npy attribution": (
        lambda b, m, p: [
            "evaluate",
            str(p),
            "--model",
            str(m),
            "--attribution",
            str(b["empty_npy"]),
            "--metrics",
            "sparseness",
        ],
        "empty.npy",
    ),
    "empty .npy mask": (
        lambda b, m, p: [
            "evaluate",
            str(p),
            "--model",
            str(m),
            "--attribution",
            str(b["map"]),
            "--mask",
            str(b["empty_npy"]),
            "--metrics",
            "pointing-game",
        ],
        "empty.npy",
    ),
    "empty .npy training rows": (
        lambda b, m, p: ["l2x-train", str(b["empty_npy"]), "--model", str(m), "--out", "e.npz"],
        "empty.npy",
    ),
    "a picture as the explainer": (
        lambda b, m, p: ["l2x", str(p), "--explainer", str(p)],
        "is not an L2X explainer (expected the .npz that rex-stream l2x-train --out wrote)",
    ),
    "empty explainer file": (
        lambda b, m, p: ["l2x", str(p), "--explainer", str(b["empty_npy"])],
        "not an L2X explainer",
    ),
    # a Python function as the model that fails or answers in the wrong shape
    "python model raises": (
        lambda b, m, p: [str(p), "--backend", "python:rexbad_functions:raises", "--iters", "1"],
        "raised RuntimeError on a batch of 1: boom",
    ),
    "python model raises in cem": (
        lambda b, m, p: ["cem", str(p), "--backend", "python:rexbad_functions:raises"],
        "rexbad_functions:raises raised RuntimeError",
    ),
    "python model answers (N, 10, 2)": (
        lambda b, m, p: [str(p), "--backend", "python:rexbad_functions:wrong_shape"],
        "expected (1, classes)",
    ),
    # numbers out of range, or not finite, that used to run (or hang) silently
    "a million million iterations": (
        lambda b, m, p: [str(p), "--model", str(m), "--iters", "1000000000000"],
        "--iters 1000000000000 must be <= 1000000",
    ),
    "endless linger": (
        lambda b, m, p: [str(p), "--model", str(m), "--linger-ms", "inf"],
        "--linger-ms",
    ),
    "--norm nan": (lambda b, m, p: [str(p), "--model", str(m), "--norm", "nan"], "--norm nan"),
    "--norm inf": (lambda b, m, p: [str(p), "--model", str(m), "--norm", "inf"], "--norm inf"),
    "--means nan": (
        lambda b, m, p: [str(p), "--model", str(m), "--means", "nan,0,0"],
        "--means (nan, 0.0, 0.0) must be finite",
    ),
    "--mask-value inf": (
        lambda b, m, p: [str(p), "--model", str(m), "--mask-value", "inf"],
        "--mask-value inf is infinite",
    ),
    "--noise without --context": (
        lambda b, m, p: [str(p), "--model", str(m), "--noise", "2"],
        "give --context",
    ),
    "--concurrent-inputs 0": (
        lambda b, m, p: [str(p.parent), "--model", str(m), "--concurrent-inputs", "0"],
        "--concurrent-inputs 0",
    ),
    "--dask-timeout-s 0": (
        lambda b, m, p: [
            str(p),
            "--model",
            str(m),
            "--dask",
            "local:1",
            "--store",
            str(b["dir"] / "d.zarr"),
            "--dask-timeout-s",
            "0",
        ],
        "--dask-timeout-s 0",
    ),
    # flags that pick different extractions, backends that cannot be
    "--multi with --contrastive": (
        lambda b, m, p: [str(p), "--model", str(m), "--multi", "--contrastive"],
        "--multi and --strategy contrastive",
    ),
    "--complete with --multi": (
        lambda b, m, p: [str(p), "--model", str(m), "--complete", "--multi", "3"],
        "--multi and --complete",
    ),
    "--complete with -s spatial": (
        lambda b, m, p: [str(p), "--model", str(m), "--complete", "-s", "spatial"],
        "--complete is contrastive",
    ),
    "an unknown onnxruntime provider": (
        lambda b, m, p: [str(p), "--model", str(m), "--backend-option", "providers=FooProvider"],
        "providers='FooProvider': none is available",
    ),
    "an http URL whose port is no number": (
        lambda b, m, p: [str(p), "--backend", "http://user:secret@:abc/x"],
        "'http://:abc/x' is not an http(s)://host[:port]/… URL",
    ),
    "an http URL without a host": (lambda b, m, p: [str(p), "--backend", "http://"], "'http://'"),
    # mode options a mode does not read, or out of range, and backend options
    "a mistyped tabular option": (
        lambda b, m, p: _table("--mode-option", "rows=5"),
        "--mode-option rows: the tabular mode has no such option",
    ),
    "row -1": (lambda b, m, p: _table("--mode-option", "row=-1"), "row='-1' must be >= 0"),
    "baseline_stat without a baseline": (
        lambda b, m, p: _table("--mode-option", "baseline_stat=median"),
        "baseline_stat needs baseline=TABLE",
    ),
    "a spectral option for a spectrum that has none": (
        lambda b, m, p: [
            str(MODELS / "spectral-markers-A.npy"),
            "--model",
            str(MODELS / "spectral-markers.onnx"),
            "--mode-option",
            "normalise=zscore",
        ],
        "the spectral mode has no such option",
    ),
    "a billion onnxruntime threads": (
        lambda b, m, p: [str(p), "--model", str(m), "--backend-option", "threads=1000000000000"],
        "threads='1000000000000' must be a positive integer (at most 4096)",
    ),
    # more than the machine has
    "--memory-gib inf": (
        lambda b, m, p: [str(p), "--model", str(m), "--memory-gib", "inf"],
        "--memory-gib inf: must be a finite number of GiB",
    ),
    "a billion meta-evaluation rounds": (
        lambda b, m, p: [*_evaluate(b, m, p), "--meta", "--meta-iterations", "1000000000000", "-q"],
        "not enough memory (Unable to allocate",
    ),
    # a directory of inputs: one line before any input runs
    "directory --output in a missing folder": (
        lambda b, m, p: [str(p.parent), "--model", str(m), "--output", str(b["missing_dir"])],
        "does not exist",
    ),
    # evaluate: flags that do nothing, numbers out of range, bad maps, failing explainers
    "evaluate --seed -1": (lambda b, m, p: [*_evaluate(b, m, p), "--seed", "-1"], "--seed -1"),
    "evaluate --concurrent-inputs 0": (
        lambda b, m, p: [*_evaluate(b, m, p), "--concurrent-inputs", "0"],
        "--concurrent-inputs 0",
    ),
    "evaluate --resume without --store": (
        lambda b, m, p: [*_evaluate(b, m, p), "--resume"],
        "--resume needs --store",
    ),
    "evaluate --overwrite without --store": (
        lambda b, m, p: [*_evaluate(b, m, p), "--overwrite"],
        "--overwrite needs --store",
    ),
    "evaluate --plot in a missing folder": (
        lambda b, m, p: [*_evaluate(b, m, p), "--plot", str(b["missing_dir"] / "p.png")],
        "does not exist",
    ),
    "evaluate --plot .txt": (
        lambda b, m, p: [*_evaluate(b, m, p), "--plot", str(b["dir"] / "p.txt")],
        "--plot",
    ),
    "evaluate --explainer no metric uses": (
        lambda b, m, p: [*_evaluate(b, m, p), "--explainer", "rex:iters=1"],
        "none of the metrics re-explains",
    ),
    "evaluate --noise-resilience -1": (
        lambda b, m, p: [*_evaluate(b, m, p), "--meta", "--noise-resilience", "-1"],
        "--noise-resilience -1",
    ),
    "metric eps < 0": (
        lambda b, m, p: _evaluate(b, m, p, "effective-complexity:eps=-1"),
        "eps='-1' must be a number >= 0",
    ),
    "metric fraction > 1": (
        lambda b, m, p: _evaluate(b, m, p, "insertion:step_fraction=2"),
        "step_fraction='2' must be in (0, 1]",
    ),
    "metric percentage > 1": (
        lambda b, m, p: _evaluate(b, m, p, "sensitivity-n:n_max_percentage=5"),
        "n_max_percentage='5' must be in (0, 1]",
    ),
    "metric noise < 0": (lambda b, m, p: _evaluate(b, m, p, "road:noise=-1"), "noise='-1'"),
    "NaN in a mask": (
        lambda b, m, p: [*_evaluate(b, m, p, "pointing-game"), "--mask", str(b["nan_map"])],
        "mask for tiny contains NaN",
    ),
    "explainer raises": (
        lambda b, m, p: [
            *_evaluate(b, m, p, "max-sensitivity:nr_samples=1"),
            "--explainer",
            "python:rexbad_functions:explainer_raises",
            "-q",
        ],
        "explainer python:rexbad_functions:explainer_raises raised ValueError: explode",
    ),
    "explainer returns NaN": (
        lambda b, m, p: [
            *_evaluate(b, m, p, "max-sensitivity:nr_samples=1"),
            "--explainer",
            "python:rexbad_functions:explainer_nan",
            "-q",
        ],
        "NaN or infinite",
    ),
    # cem and l2x-train
    "cem --seed -1": (lambda b, m, p: ["cem", str(p), "--model", str(m), "--seed", "-1"], "--seed"),
    "cem --kappa inf": (
        lambda b, m, p: ["cem", str(p), "--model", str(m), "--kappa", "inf"],
        "cem.kappa = inf",
    ),
    "cem --reference for a pertinent positive": (
        lambda b, m, p: ["cem", str(p), "--model", str(m), "--reference", str(p)],
        "--kind pn",
    ),
    "cem --resume without --store": (
        lambda b, m, p: ["cem", str(p), "--model", str(m), "--resume"],
        "--resume needs --store",
    ),
    "l2x-train --seed -1": (
        lambda b, m, p: [
            "l2x-train",
            str(b["dir"]),
            "--model",
            str(m),
            "--out",
            "e.npz",
            "--seed",
            "-1",
        ],
        "--seed -1",
    ),
    "l2x --overwrite without --store": (
        lambda b, m, p: ["l2x", str(p), "--explainer", "e.npz", "--overwrite"],
        "--overwrite needs --store",
    ),
}


def _table(*extra: str) -> list[str]:
    """The bundled table model on its test rows, with ``extra`` arguments."""
    table, model = MODELS / "tabular-breast-cancer-test.csv", MODELS / "tabular-breast-cancer.onnx"
    return [str(table), "--model", str(model), "--mode-option", "drop=label", *extra]


def _evaluate(b: dict[str, Path], m: Path, p: Path, metrics: str = "sparseness") -> list[str]:
    """``rex-stream evaluate`` of the picture with a good map and ``metrics``."""
    return [
        "evaluate",
        str(p),
        "--model",
        str(m),
        "--attribution",
        str(b["map"]),
        "--metrics",
        metrics,
    ]


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line(
    name: str,
    bad: dict[str, Path],
    tiny_cnn: Path,
    tiny_image: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.chdir(bad["functions"])  # python:rexbad_functions:… is found here
    arguments, needle = CASES[name]
    one_line_error(arguments(bad, tiny_cnn, tiny_image), needle, capsys, caplog)


def tree_digest(folder: Path) -> str:
    """A digest of every file's path and bytes under ``folder``."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _foreign_zarr(folder: Path) -> Path:
    """A Zarr store another tool wrote: an array at its root."""
    import zarr

    root = zarr.open_group(str(folder / "theirs.zarr"), mode="w")
    root.create_array("x", shape=(3,), dtype="f4")[:] = [1, 2, 3]
    return folder / "theirs.zarr"


def _v2_zarr(folder: Path) -> Path:
    """A Zarr v2 store."""
    import zarr

    zarr.open_group(str(folder / "v2.zarr"), mode="w", zarr_format=2).attrs["made"] = "v2"
    return folder / "v2.zarr"


def _other_files(folder: Path) -> Path:
    """A folder of files that is no store."""
    (folder / "notes").mkdir()
    (folder / "notes" / "todo.txt").write_text("keep me")
    return folder / "notes"


def _a_file(folder: Path) -> Path:
    (folder / "file.zarr").write_text("keep me")
    return folder / "file.zarr"


#: name → (what to build, what the one line must say)
STORES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "another tool's zarr": (_foreign_zarr, "Zarr store of another tool"),
    "zarr v2": (_v2_zarr, "Zarr v2 store"),
    "a folder of other files": (_other_files, "not a Zarr store"),
    "a file": (_a_file, "is a file"),
}


@pytest.mark.parametrize("command", ["explain", "directory", "evaluate", "cem"])
@pytest.mark.parametrize("kind", list(STORES))
def test_a_store_that_is_not_ours_is_refused_and_untouched(
    kind: str,
    command: str,
    bad: dict[str, Path],
    tiny_cnn: Path,
    tiny_image: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    build, needle = STORES[kind]
    store = build(tmp_path)
    before = tree_digest(store) if store.is_dir() else store.read_bytes()
    lead = {
        "explain": [str(tiny_image), "--model", str(tiny_cnn), "--iters", "1"],
        "directory": [str(tiny_image.parent), "--model", str(tiny_cnn), "--iters", "1"],
        "evaluate": _evaluate(bad, tiny_cnn, tiny_image),
        "cem": ["cem", str(tiny_image), "--model", str(tiny_cnn), "--steps", "1"],
    }[command]
    one_line_error([*lead, "--store", str(store)], needle, capsys, caplog)
    assert (tree_digest(store) if store.is_dir() else store.read_bytes()) == before


def test_a_store_in_a_missing_folder_is_not_created(
    bad: dict[str, Path],
    tiny_cnn: Path,
    tiny_image: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = tmp_path / "typo" / "runs.zarr"
    for lead in (
        [str(tiny_image), "--model", str(tiny_cnn)],
        _evaluate(bad, tiny_cnn, tiny_image),
        ["cem", str(tiny_image), "--model", str(tiny_cnn)],
    ):
        one_line_error([*lead, "--store", str(store)], "does not exist", capsys, caplog)
    directory = [str(tiny_image.parent), "--model", str(tiny_cnn), "--output", str(store)]
    one_line_error(directory, "does not exist", capsys, caplog)
    assert not (tmp_path / "typo").exists()


def test_our_store_stays_whole_under_bad_commands(
    tiny_cnn: Path,
    tiny_image: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    import zarr

    store = tmp_path / "runs.zarr"
    run = [str(tiny_image), "--model", str(tiny_cnn), "--iters", "1", "--seed", "3"]
    assert main([*run, "--store", str(store), "-q"]) == 0
    capsys.readouterr()
    before = tree_digest(store)
    for extra, needle in (
        (["--seed", "4", "--resume"], "different settings"),
        (["--resume", "--overwrite"], "not both"),
        ([], "already exists"),
        (["--resume", "--min-box-size", "0"], "--min-box-size 0"),
    ):
        one_line_error([*run, "--store", str(store), *extra], needle, capsys, caplog)
        assert tree_digest(store) == before
    group = zarr.open_group(str(store / "tiny"), mode="r+")
    group.attrs["rex_stream"] = {"format": 1}  # as an older rex-stream wrote it
    before = tree_digest(store)
    one_line_error([*run, "--store", str(store), "--resume"], "store format 1", capsys, caplog)
    assert tree_digest(store) == before


#: rex.toml text → what the one line must say
TOML = {
    "[causal]\niters = true\n": "[causal] iters = True is invalid (expected a value",
    "[explanation]\nchunk_size = 1.5\n": "chunk_size = 1.5 is invalid (expected a whole number)",
    "[rex]\nseed = -1\n": "rex.seed = -1 must be >= 0",
    "[rex.onnx]\nnorm = inf\n": "rex.onnx.norm = inf must be a finite number",
    "[rex]\nmask_value = -inf\n": "rex.mask_value = -inf is infinite",
    "[causal]\niters = 1e30\n": "must be <= 1000000",
}


@pytest.mark.parametrize("text", list(TOML))
def test_a_bad_rex_toml_is_one_line(
    text: str,
    tiny_cnn: Path,
    tiny_image: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = tmp_path / "rex.toml"
    config.write_text(text)
    argv = [str(tiny_image), "--model", str(tiny_cnn), "-c", str(config), "-q"]
    line = one_line_error(argv, TOML[text], capsys, caplog)
    assert str(config) in line


def test_a_bad_rex_toml_value_is_not_blamed_on_the_flag(
    tiny_cnn: Path,
    tiny_image: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The file's bad value is named under the file's key even when the flag is given too."""
    config = tmp_path / "rex.toml"
    config.write_text("[causal]\niters = 0\n")
    argv = [str(tiny_image), "--model", str(tiny_cnn), "-c", str(config), "--iters", "2", "-q"]
    line = one_line_error(argv, "causal.iters = 0 must be > 0", capsys, caplog)
    assert str(config) in line and "--iters" not in line


def test_a_script_answering_in_the_wrong_shape_is_one_line(
    tiny_image: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    script = tmp_path / "script.py"
    script.write_text(
        "import numpy as np\n"
        "model_shape = [1, 3, 32, 32]\n"
        "def preprocess(path, shape, device, mode):\n"
        "    return np.zeros((1, 3, 32, 32), np.float32)\n"
        "def prediction_function(mutants, target=None, raw=False, binary_threshold=None):\n"
        "    return np.zeros((len(mutants), 10, 2))\n"
    )
    one_line_error(
        [str(tiny_image), "--script", str(script), "-q"], "expected (1, classes)", capsys, caplog
    )

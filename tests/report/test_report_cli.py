"""``rex-stream report``: one-line errors for bad input, --limit/--filter, and --watch's
atomic rewrites (the file on disk is always a whole page)."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
import zarr

from rex_stream.cli.main import main
from rex_stream.engine.atomic_file import write_atomically
from rex_stream.engine.lock import GroupLock
from rex_stream.errors import OutputError
from rex_stream.report import watch
from tests.report.conftest import Stores


def one_error_line(capsys: pytest.CaptureFixture[str], code: int, needle: str) -> None:
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and err[0].startswith("rex-stream: error: "), err
    assert needle in err[0]


def test_bad_inputs_are_one_line(
    stores: Stores, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "r.html")
    one_error_line(capsys, main(["report", str(tmp_path / "none.zarr"), "-o", out]), "no such")
    one_error_line(capsys, main(["report", str(stores.folder), "-o", out]), "not a rex-stream")
    empty = tmp_path / "empty.zarr"
    zarr.open_group(str(empty), mode="w")
    one_error_line(capsys, main(["report", str(empty), "-o", out]), "holds no inputs")
    unwritable = str(tmp_path / "missing" / "r.html")
    one_error_line(capsys, main(["report", str(stores.rex), "-o", unwritable]), "cannot write")
    code = main(["report", str(stores.rex), "-o", out, "--filter", "colour=red"])
    one_error_line(capsys, code, "--filter")
    code = main(["report", str(stores.rex), "-o", out, "--filter", "status=lost"])
    one_error_line(capsys, code, "status")
    one_error_line(capsys, main(["report", str(stores.rex), "-o", out, "--limit", "0"]), "--limit")
    with pytest.raises(SystemExit) as exited:  # argparse's own exit, after one line
        main(["report", str(stores.rex)])
    one_error_line(capsys, int(str(exited.value.code)), "--output")
    assert not Path(out).exists()


def test_limit_filter_and_json_summary(
    stores: Stores, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.html"
    args = ["report", str(stores.rex), "--summary", str(stores.summary), "-o", str(out)]
    assert main([*args, "--filter", "status=explained", "--limit", "3", "--json", "-q"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["inputs"] == stores.photos + 1 and summary["shown"] == 3
    assert summary["counts"]["failed"] == 1
    assert out.read_text().count('<tr class="row"') == 3
    assert "broken.png" not in out.read_text().split('id="index"', 1)[1]


def test_write_atomically_keeps_the_old_page_when_writing_fails(tmp_path: Path) -> None:
    page = tmp_path / "r.html"
    write_atomically(page, "<html>one</html>")
    write_atomically(page, "<html>two</html>")
    assert page.read_text() == "<html>two</html>"
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]  # no temporary file left
    if os.geteuid() != 0:  # root writes anywhere
        tmp_path.chmod(0o500)
        try:
            with pytest.raises(OutputError, match="cannot write"):
                write_atomically(page, "<html>three</html>")
        finally:
            tmp_path.chmod(0o700)
        assert page.read_text() == "<html>two</html>"


def test_watch_rewrites_until_no_input_is_running(
    stores: Stores, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "copy.zarr"
    shutil.copytree(stores.rex, store)
    zarr.open_group(str(store / "photo2.png"), mode="r+").attrs["complete"] = False
    out = tmp_path / "r.html"
    pages: list[str] = []
    lock = GroupLock.for_group(store, "photo2.png")
    lock.acquire()

    def release_after_second_write(seconds: float) -> None:
        pages.append(out.read_text())
        if len(pages) == 2:
            lock.release()
            zarr.open_group(str(store / "photo2.png"), mode="r+").attrs["complete"] = True

    monkeypatch.setattr(time, "sleep", release_after_second_write)
    try:
        assert main(["report", str(store), "-o", str(out), "--watch", "0.01", "-q"]) == 0
    finally:
        monkeypatch.undo()
        if lock.held:
            lock.release()
    assert len(pages) == 2 and all(p.rstrip().endswith("</html>") for p in pages)
    assert all('data-status="running"' in p for p in pages)
    assert 'data-status="running"' not in out.read_text()


def test_watch_stops_after_the_rounds_asked_for() -> None:
    writes: list[int] = []
    made = watch(lambda: writes.append(1), 5.0, rounds=3, sleep=lambda s: None)
    assert made == 3 and len(writes) == 3

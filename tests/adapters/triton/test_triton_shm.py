"""Triton system shared memory never leaks: regions are named per run, unregistered on every exit
a process survives (normal, SIGINT, SIGTERM), and those of a run killed with SIGKILL are cleaned
by the next run. Real Triton (PyTriton) and real subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import numpy as np
import pytest

from rex_stream.adapters.triton.shm import SHM_ROOT, owner_pid
from rex_stream.cli.main import main
from rex_stream.engine.backend import BackendSettings, open_backend
from tests.plugins.triton_fixtures import DEMO_IMAGE as IMAGE
from tests.plugins.triton_fixtures import TRITON_TOKEN
from tests.servers.triton_server import TRITON_PYTHON_ENV, TritonProcess, triton_python

ROOT = Path(__file__).resolve().parents[3]
TOKEN_VAR = "REX_STREAM_TEST_TRITON_TOKEN"
OPTIONS = {"token_env": TOKEN_VAR, "auth": "triton", "shared_memory": "system"}


@pytest.fixture(scope="module")
def server(tiny_onnx_model: Path) -> Iterator[TritonProcess]:
    """A Triton server with the tiny model as ``classifier`` and a ``slow`` copy (60 ms/call);
    the token's environment variable is set for the tests and their subprocesses."""
    if triton_python() is None:
        pytest.skip(f"needs a PyTriton environment: set {TRITON_PYTHON_ENV} to its python")
    process = TritonProcess(
        model_path=tiny_onnx_model, max_batch_size=4, slow_model="slow", slow_ms=60,
        access_token=TRITON_TOKEN,
    )  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(TOKEN_VAR, TRITON_TOKEN)
        try:
            process.start()
            yield process
        finally:
            process.stop()
            if process.log_path is not None:
                process.log_path.unlink(missing_ok=True)


def registered(server: TritonProcess) -> dict[str, str]:
    """``{region name: key}`` of the server's registered system shared-memory regions."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(server.http_url)
    try:
        status = client.get_system_shared_memory_status(
            headers={"triton-access-token": TRITON_TOKEN}
        )
    finally:
        client.close()
    return {entry["name"]: entry["key"] for entry in status}


def regions_of(server: TritonProcess, pid: int) -> list[str]:
    """Regions registered on the server by process ``pid``."""
    return [name for name in registered(server) if owner_pid(name) == pid]


def files_of(pid: int) -> list[str]:
    """``/dev/shm`` entries of process ``pid``'s regions."""
    return [p.name for p in SHM_ROOT.iterdir() if owner_pid(p.name) == pid]


def wait_for(condition: Callable[[], bool], timeout_s: float = 60.0) -> None:
    """Poll until ``condition()`` holds (a subprocess's progress: nothing to await on)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.1)


@pytest.mark.triton
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_regions_are_named_per_run_and_released(server: TritonProcess, protocol: str) -> None:
    url = server.grpc_url if protocol == "grpc" else server.http_url
    scheme = "triton" if protocol == "grpc" else "triton+http"

    async def run() -> list[str]:
        settings = BackendSettings(max_inflight=2, options=OPTIONS)
        backend = await open_backend(f"{scheme}://{url}/classifier", settings)
        try:
            return regions_of(server, os.getpid())
        finally:
            await backend.aclose()

    names = anyio.run(run)
    assert len(names) == 4 and len({n.split("-")[3] for n in names}) == 1  # one run tag
    assert regions_of(server, os.getpid()) == [] and files_of(os.getpid()) == []


KILLED_RUN = """
import sys, time, anyio
from rex_stream.engine.backend import BackendSettings, open_backend

async def main():
    options = dict(token_env=sys.argv[2], auth="triton", shared_memory="system")
    backend = await open_backend(sys.argv[1], BackendSettings(max_inflight=3, options=options))
    print("ready", flush=True)
    await anyio.sleep(120)

anyio.run(main)
"""


@pytest.mark.triton
def test_regions_of_a_killed_run_are_cleaned_by_the_next(server: TritonProcess) -> None:
    spec = f"triton://{server.grpc_url}/classifier"
    victim = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN, spec, TOKEN_VAR],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        assert victim.stdout is not None and victim.stdout.readline().strip() == "ready"
        assert len(regions_of(server, victim.pid)) == 6
    finally:
        victim.kill()  # SIGKILL: no chance to clean up
        victim.wait(timeout=30)
    # The server still holds them (Python's resource tracker may unlink the files meanwhile).
    assert len(regions_of(server, victim.pid)) == 6

    async def next_run() -> None:
        settings = BackendSettings(max_inflight=1, options=OPTIONS)
        backend = await open_backend(spec, settings)
        await backend.aclose()

    anyio.run(next_run)
    assert regions_of(server, victim.pid) == [] and files_of(victim.pid) == []


@pytest.mark.triton
@pytest.mark.parametrize(
    ("signum", "code", "word"),
    [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")],
    ids=["SIGTERM", "SIGINT"],
)
def test_signalled_cli_run_unregisters_and_stays_resumable(
    server: TritonProcess,
    tmp_path: Path,
    signum: int,
    code: int,
    word: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = tmp_path / "run.zarr"
    flags = [
        str(IMAGE), "--backend", f"triton://{server.grpc_url}/slow", "--store", str(store),
        "--iters", "8", "--seed", "5", "--min-box-size", "4", "-n", "-q", "--json",
        *[f"--backend-option={k}={v}" for k, v in OPTIONS.items()],
    ]  # fmt: skip
    run = subprocess.Popen(
        [sys.executable, "-m", "rex_stream.cli", *flags],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        wait_for(lambda: bool(regions_of(server, run.pid)) or run.poll() is not None)
        wait_for(lambda: (store / "zarr.json").exists() or run.poll() is not None)
        time.sleep(1.0)  # well into the run
        assert run.poll() is None, run.communicate()
        run.send_signal(signum)
        _, stderr = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == code
    assert stderr.strip().splitlines()[-1] == (
        f"rex-stream: {word} (with --store, continue with --resume)"
    )
    assert regions_of(server, run.pid) == [] and files_of(run.pid) == []
    assert main([*flags, "--resume"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["stats"]["iterations"] == 8


@pytest.mark.triton
def test_a_slot_abandoned_mid_request_is_not_lent_until_the_server_is_done(
    triton_server: TritonProcess, triton_token_env: str
) -> None:
    """A request given up on (here: a timeout) may still run on the server and write its output
    region later; its slot is lent again only once Triton says the regions are idle."""
    from rex_stream.adapters.triton import TritonBackend
    from rex_stream.errors import BackendTimeout

    options = {**OPTIONS, "token_env": triton_token_env}
    batch = np.zeros((2, 3, 32, 32), dtype=np.float32)

    async def run() -> None:
        settings = BackendSettings(timeout_s=1.0, max_inflight=1, options=options)
        backend = await open_backend(f"triton://{triton_server.grpc_url}/slow", settings)
        assert isinstance(backend, TritonBackend)
        try:
            started = time.monotonic()
            with pytest.raises(BackendTimeout):
                await backend.infer(batch)  # the slow model answers after 3 s
            assert (backend.shared_memory.free, backend.shared_memory.quarantined) == (0, 1)
            with pytest.raises(BackendTimeout):
                await backend.infer(batch)  # the server still uses the slot: sent by socket
            assert (backend.shared_memory.free, backend.shared_memory.quarantined) == (0, 1)
            await anyio.sleep(max(0.0, started + 6.5 - time.monotonic()))  # both requests done
            await backend.shared_memory.recycle()
            assert (backend.shared_memory.free, backend.shared_memory.quarantined) == (1, 0)
        finally:
            await backend.aclose()

    anyio.run(run)

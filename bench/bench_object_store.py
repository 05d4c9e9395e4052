"""Object stores (issue 25): a directory run to S3 (moto on 127.0.0.1) against the local store,
objects per finished input before and after compaction, and the resume scan of many finished
inputs.

    python bench/bench_object_store.py [--inputs 200] [--iters 4] [--scan 10000 100000]

Printed, as ratios where there are two sides:
1. wall time of ``--inputs`` small pictures (tiny CNN, one process) to a local store and to
   ``s3://bench/run.zarr``, and S3 ÷ local, with the load average and the CPU seconds of this
   process (and of moto's); the S3 requests per input (every request s3fs sends, by API call
   and by what it touches). moto runs in a process of its own (``--moto-in-process``: in this
   one, as before; it then competes with the run for the GIL);
2. objects (files) per finished input for ``--iters`` 4, 20 and 100: local and S3 (both
   compacted when the input finishes), and the record batches S3 saw while it ran;
3. the resume scan: the time to learn which of N finished inputs are complete (one head read
   per input, no record read), local and S3, per input and in total.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from rex_stream import ExplainConfig, explain_sync  # noqa: E402
from rex_stream.engine.store import ExplanationStore  # noqa: E402
from rex_stream.runs.many import explain_many  # noqa: E402
from tests.onnx_models import save_tiny_cnn  # noqa: E402


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start_moto(in_process: bool) -> tuple[object, str]:
    """moto's S3 on a free port: by default in a process of its own (``moto_server``), as a
    real S3 is another machine; ``in_process`` runs it in this process (it then competes with
    the run for the GIL). Returns the server and how it runs."""
    import logging
    import subprocess
    import urllib.request

    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server: object
    if in_process:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()  # type: ignore[attr-defined]
        how = "moto ThreadedMotoServer in the benchmark's own process"
    else:
        command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:  # type: ignore[attr-defined]
                    raise SystemExit("moto_server did not start") from None
                time.sleep(0.2)
        how = f"moto_server in its own process (pid {server.pid})"  # type: ignore[attr-defined]
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench-secret",
        AWS_ENDPOINT_URL=endpoint, AWS_DEFAULT_REGION="us-east-1",
    )  # fmt: skip
    import s3fs

    s3fs.S3FileSystem().mkdir("bench")
    return server, how


def _stop_moto(server: object) -> None:
    if hasattr(server, "terminate"):
        server.terminate()
        server.wait(timeout=30)  # type: ignore[attr-defined]
    else:
        server.stop()  # type: ignore[attr-defined]


def _pictures(folder: Path, count: int) -> list[Path]:
    from PIL import Image

    rng = np.random.default_rng(5)
    paths = []
    for number in range(count):
        pixels = rng.integers(0, 80, size=(32, 32, 3), dtype=np.uint8)
        row, col = 3 * number % 20, 7 * number % 20
        pixels[row : row + 10, col : col + 10] = 230
        path = folder / f"p{number:05d}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def _s3_objects(prefix: str) -> int:
    import s3fs

    fs = s3fs.S3FileSystem()
    fs.invalidate_cache()
    total = 0
    for where in (prefix, f"{prefix}.records"):
        try:
            total += len(fs.find(where))
        except FileNotFoundError:
            pass
    return total


def _local_files(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file())


#: S3 requests by API call (GetObject, PutObject …), counted by :func:`count_requests`.
REQUESTS: Counter[str] = Counter()
#: The same requests by API call and what they touch (head, lease, record, array …).
ROLES: Counter[str] = Counter()


def _role(key: str) -> str:
    """What an object key is, in the store's layout (for the request breakdown)."""
    if ".locks" in key:
        return "lease"
    if ".records" in key:
        return "records"
    parts = key.rstrip("/").split("/")  # run.zarr/<input>/<generation>/<array>/…
    if parts[-1] == "zarr.json":
        return ["root", "root", "root", "head", "generation", "array"][min(len(parts), 5)]
    if "c" in parts[3:]:
        return "chunk"
    return f"listing (depth {len(parts)})"


def count_requests() -> None:
    """Count every request s3fs sends (zarr's FsspecStore goes through s3fs too)."""
    import s3fs

    sending = s3fs.S3FileSystem._call_s3

    async def counted(self: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        REQUESTS[method] += 1
        ROLES[f"{method} {_role(str(kwargs.get('Key', kwargs.get('Prefix', ''))))}"] += 1
        return await sending(self, method, *args, **kwargs)

    s3fs.S3FileSystem._call_s3 = counted  # type: ignore[method-assign]


def _cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system) of process ``pid`` so far (0 when unknown)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def directory_run(
    model: Path, pictures: list[Path], iters: int, tmp: Path, server_pid: int | None
) -> None:
    config = ExplainConfig().with_overrides(iters=iters, seed=3, min_box_size=4)
    times, cpu, server_cpu = {}, {}, {}
    for label, store in (("local", str(tmp / "run.zarr")), ("s3", "s3://bench/run.zarr")):
        REQUESTS.clear()
        ROLES.clear()
        start, start_cpu = time.perf_counter(), time.process_time()
        start_server = _cpu_s(server_pid)
        anyio.run(lambda s=store: explain_many(pictures, str(model), config, store=s))
        times[label] = time.perf_counter() - start
        cpu[label] = time.process_time() - start_cpu
        server_cpu[label] = _cpu_s(server_pid) - start_server
    ratio = times["s3"] / times["local"]
    load = os.getloadavg()[0]
    print(f"1. {len(pictures)} inputs, {iters} iterations: local {times['local']:.2f} s, "
          f"S3 (moto) {times['s3']:.2f} s, S3 / local = {ratio:.2f} (load {load:.1f})")  # fmt: skip
    print(f"   CPU of this process: local {cpu['local']:.2f} s, S3 {cpu['s3']:.2f} s "
          f"(S3 / local = {cpu['s3'] / cpu['local']:.2f})"
          + (f"; moto_server's own CPU during the S3 run {server_cpu['s3']:.2f} s"
             if server_pid else ""))  # fmt: skip
    total = sum(REQUESTS.values())
    print(f"   S3 requests: {total} ({total / len(pictures):.1f} per input): "
          + ", ".join(f"{k} {v}" for k, v in REQUESTS.most_common()))  # fmt: skip
    print("   per input, by call and object: "
          + ", ".join(f"{k} {v / len(pictures):.2g}" for k, v in ROLES.most_common()))  # fmt: skip


def objects_per_input(model: Path, image: Path, tmp: Path) -> None:
    print("2. objects per finished input (one picture, tiny CNN)")
    print("   iters | local files | S3 objects | S3 record batches written while it ran")
    # (both compact when an input finishes: the objects per input are flat in --iters)
    for iters in (4, 20, 100):
        local = tmp / f"obj{iters}.zarr"
        explain_sync(image, str(model), store=local, iters=iters, seed=1, min_box_size=4)
        ROLES.clear()
        explain_sync(image, str(model), store=f"s3://bench/obj{iters}.zarr", iters=iters,
                     seed=1, min_box_size=4)  # fmt: skip
        batches = ROLES["put_object records"] - 1  # the pack is the last one
        root_files = 1  # the store's own zarr.json, shared by all inputs
        objects = _s3_objects(f"bench/obj{iters}.zarr") - root_files
        print(f"   {iters:5d} | {_local_files(local) - root_files:11d} | {objects:10d} | {batches}")


def _head(generation: str | None) -> bytes:
    attributes = {"complete": True, "settings": {"seed": 1}, "rex_stream": {"format": 2}}
    if generation:
        attributes["generation"] = generation
    return json.dumps({"zarr_format": 3, "node_type": "group", "attributes": attributes}).encode()


def resume_scan(count: int, tmp: Path, s3: bool) -> None:
    names = [f"in{n:06d}" for n in range(count)]
    root_meta = json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {}}).encode()
    if s3:
        import s3fs

        fs = s3fs.S3FileSystem()
        prefix = f"bench/scan{count}.zarr"
        data = {f"{prefix}/zarr.json": root_meta}
        data.update({f"{prefix}/{n}/zarr.json": _head("g0") for n in names})
        fs.pipe(data)
        store = f"s3://{prefix}"
    else:
        folder = tmp / f"scan{count}.zarr"
        folder.mkdir()
        (folder / "zarr.json").write_bytes(root_meta)
        for n in names:
            (folder / n).mkdir()
            (folder / n / "zarr.json").write_bytes(_head(None))
        store = str(folder)
    start = time.perf_counter()
    done = sum(
        1 for n in names if (ExplanationStore.group_attributes(store, n) or {}).get("complete")
    )
    wall = time.perf_counter() - start
    where = "S3 (moto)" if s3 else "local"
    print(f"3. resume scan, {count} finished inputs, {where}: {wall:.2f} s "
          f"({1e3 * wall / count:.2f} ms per input), {done} complete")  # fmt: skip
    if s3:  # the same heads fetched concurrently (s3fs batches the GETs)
        start = time.perf_counter()
        heads = fs.cat([f"{prefix}/{n}/zarr.json" for n in names])
        done = sum(1 for h in heads.values() if json.loads(h)["attributes"].get("complete"))
        wall = time.perf_counter() - start
        print(f"   concurrent head reads: {wall:.2f} s ({1e3 * wall / count:.2f} ms per input), "
              f"{done} complete")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=200)
    parser.add_argument("--iters", type=int, default=4)
    parser.add_argument("--scan", type=int, nargs="*", default=[10000, 100000])
    parser.add_argument("--scan-s3-max", type=int, default=10000,
                        help="largest scan run on moto (slow to fill)")  # fmt: skip
    parser.add_argument(
        "--moto-in-process",
        action="store_true",
        help="run moto in this process (the old way; it competes for the GIL)",
    )
    parser.add_argument("--skip-objects", action="store_true",
                        help="leave out part 2 (objects per finished input)")  # fmt: skip
    args = parser.parse_args()
    import logging

    logging.getLogger("rex_stream").setLevel(logging.ERROR)  # the model's normalisation hint
    server, how = _start_moto(args.moto_in_process)
    print(f"S3: {how}; load average {open('/proc/loadavg').read().strip()}")
    count_requests()
    try:
        with tempfile.TemporaryDirectory() as name:
            tmp = Path(name)
            model = save_tiny_cnn(tmp / "tiny.onnx")
            pictures = _pictures(tmp, max(1, args.inputs))
            if args.inputs:
                pid = getattr(server, "pid", None)
                directory_run(model, pictures, args.iters, tmp, pid)
            if not args.skip_objects:
                objects_per_input(model, pictures[0], tmp)
            for count in args.scan:
                resume_scan(count, tmp, s3=False)
                if count <= args.scan_s3_max:
                    resume_scan(count, tmp, s3=True)
    finally:
        _stop_moto(server)


if __name__ == "__main__":
    main()

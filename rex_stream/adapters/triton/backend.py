"""Triton Inference Server backend: ``triton://host:8001/model[/version]`` (gRPC) and
``triton+http://host:8000/model[/version]`` (HTTP/REST, binary tensors).

The model's input and output names, datatypes, shapes, ``max_batch_size`` and input layout are
read from the server. One client (one gRPC channel, or one HTTP connection pool) serves the whole
run; every call carries a deadline. Options (``BackendSettings.options`` or the spec's query
string, e.g. ``triton://host:8001/resnet?output=logits``):

- ``output=NAME``: the output holding the scores, when the model has several;
- ``ssl=true``, ``ssl_ca=PATH``, ``ssl_cert=PATH``, ``ssl_key=PATH``: TLS to the server;
- ``token_env=NAME`` or ``token_file=PATH``: a secret sent with every request (never logged), as
  ``authorization: Bearer …`` (``auth=bearer``, the default), as Triton's own restricted-API
  header ``triton-access-token`` (``auth=triton``), or as a custom header (``auth_header=NAME``);
- ``shared_memory=system``: pass tensors through Triton's system shared-memory extension
  (server on the same host only). Regions are named per run and process
  (``rex-stream-<pid>-<tag>-…``), unregistered on every exit the process survives, and those
  of killed runs are cleaned by the next run (see :mod:`.triton_shm`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

import anyio
import numpy as np

from rex_stream.adapters.triton.shm_names import (
    is_stale,
    region_name,
    registered_regions,
    stale_local_keys,
    unlink_key,
)
from rex_stream.engine.backend import BackendSettings, ModelInfo
from rex_stream.engine.install_hint import install_command
from rex_stream.engine.options import option_flag
from rex_stream.errors import (
    BackendError,
    BackendTimeout,
    ConfigError,
    InputError,
    TransientBackendError,
)

try:
    import aiohttp
    import tritonclient.grpc.aio as grpcclient
    import tritonclient.http.aio as httpclient
    import yarl
    from tritonclient.utils import InferenceServerException, triton_to_np_dtype
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"the Triton backend needs tritonclient: {install_command('triton')}", name=exc.name
    ) from exc

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_PORTS = {"grpc": 8001, "http": 8000}
SCHEMES = {"triton": "grpc", "triton+grpc": "grpc", "triton+http": "http"}
KNOWN_OPTIONS = frozenset(
    {"output", "ssl", "ssl_ca", "ssl_cert", "ssl_key", "token_env", "token_file", "auth"}
    | {"auth_header", "shared_memory"}
)
TRITON_ACCESS_HEADER = "triton-access-token"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
#: HTTP statuses of failures that may pass: overload, gateways, a server restarting.
TRANSIENT_HTTP = frozenset({"429", "500", "502", "503", "504"})
#: What Triton says while a model is being unloaded or reloaded (a restart, a repository poll).
#: gRPC replies are capped (a broken server cannot fill the memory): never below this floor …
REPLY_FLOOR_BYTES = 16 * 2**20
#: … and otherwise at this many bytes per score of one call (scores are 4 or 8 bytes).
REPLY_BYTES_PER_SCORE = 64
UNKNOWN_CLASSES = 1 << 16
MODEL_RELOADING = ("unknown model", "has no available versions", "is not ready")


@dataclass(frozen=True)
class TritonTarget:
    """Where a spec points: protocol, address, model and version."""

    protocol: str
    host: str
    port: int
    model: str
    version: str = ""

    @property
    def address(self) -> str:
        """``host:port`` as the clients take it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        scheme = "triton" if self.protocol == "grpc" else "triton+http"
        version = f"/{self.version}" if self.version else ""
        return f"{scheme}://{self.address}/{self.model}{version}"


def parse_spec(spec: str) -> tuple[TritonTarget, dict[str, str]]:
    """Split ``triton[+http]://host[:port]/model[/version][?key=value&…]`` into its parts."""
    parts = urlsplit(spec)
    protocol = SCHEMES.get(parts.scheme.lower())
    if protocol is None:
        raise ConfigError(f"not a Triton spec: {spec!r} (use triton://… or triton+http://…)")
    try:
        port = parts.port or DEFAULT_PORTS[protocol]
    except ValueError as exc:
        raise ConfigError(f"bad port in Triton spec {spec!r}: {exc}") from exc
    path = [p for p in parts.path.split("/") if p]
    if not parts.hostname or not 1 <= len(path) <= 2:
        raise ConfigError(
            f"bad Triton spec {spec!r}: expected {parts.scheme}://host:port/model[/version]"
        )
    version = path[1] if len(path) == 2 else ""
    if version and not version.isdigit():
        raise ConfigError(f"bad model version {version!r} in {spec!r}: it must be a number")
    target = TritonTarget(protocol, parts.hostname, port, path[0], version)
    return target, dict(parse_qsl(parts.query, keep_blank_values=True))


def _read_token(options: Mapping[str, str]) -> str | None:
    """The secret named by ``token_env`` or ``token_file`` (never logged)."""
    if "token_env" in options and "token_file" in options:
        raise ConfigError("give either token_env or token_file, not both")
    if "token_env" in options:
        name = options["token_env"]
        token = os.environ.get(name, "").strip()
        if not token:
            raise ConfigError(f"token_env={name}: the environment variable is unset or empty")
        return token
    if "token_file" in options:
        path = Path(options["token_file"]).expanduser()
        try:
            token = path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"token_file={path}: cannot read it ({exc.strerror})") from exc
        if not token:
            raise ConfigError(f"token_file={path}: the file is empty")
        return token
    return None


def auth_headers(options: Mapping[str, str], protocol: str) -> dict[str, str]:
    """Request headers (gRPC metadata) that carry the token, if one is configured."""
    token = _read_token(options)
    if token is None:
        if "auth" in options or "auth_header" in options:
            raise ConfigError("auth/auth_header given without token_env=NAME or token_file=PATH")
        return {}
    if "auth_header" in options:
        return {options["auth_header"].strip().lower(): token}
    style = options.get("auth", "bearer").strip().lower()
    if style == "bearer":
        return {"authorization": f"Bearer {token}"}
    if style == "triton":
        # Triton's restricted APIs: gRPC clients send the key with this prefix.
        prefix = "triton-grpc-protocol-" if protocol == "grpc" else ""
        return {prefix + TRITON_ACCESS_HEADER: token}
    raise ConfigError(f"option auth={style!r}: use bearer or triton (or auth_header=NAME)")


def _tls_files(options: Mapping[str, str]) -> dict[str, str | None]:
    """Paths of the TLS files given (checked readable now, for a clear error)."""
    result: dict[str, str | None] = {}
    for key in ("ssl_ca", "ssl_cert", "ssl_key"):
        if key not in options:
            result[key] = None
            continue
        path = Path(options[key]).expanduser()
        try:
            with path.open("rb"):
                pass
        except OSError as exc:
            raise ConfigError(f"{key}={options[key]}: cannot read it ({exc.strerror})") from exc
        result[key] = str(path)
    return result


def reply_limit(info: ModelInfo) -> int:
    """The largest gRPC reply accepted: ample room for one call's scores, never below a floor."""
    per_call = (info.max_batch or 1) * (info.num_classes or UNKNOWN_CLASSES)
    return max(REPLY_FLOOR_BYTES, per_call * REPLY_BYTES_PER_SCORE)


def _make_client(
    target: TritonTarget,
    options: Mapping[str, str],
    settings: BackendSettings,
    receive_limit: int = -1,
) -> Any:
    """One client for the whole run, with TLS when asked for (gRPC replies capped at
    ``receive_limit`` bytes; -1: no cap, while metadata is read)."""
    use_ssl = option_flag(options, "ssl")
    tls = _tls_files(options) if use_ssl else {}
    if target.protocol == "grpc":
        return grpcclient.InferenceServerClient(
            target.address, ssl=use_ssl, root_certificates=tls.get("ssl_ca"),
            private_key=tls.get("ssl_key"), certificate_chain=tls.get("ssl_cert"),
            channel_args=[("grpc.max_send_message_length", -1),
                          ("grpc.max_receive_message_length", receive_limit)],
        )  # fmt: skip
    ssl_context = None
    if use_ssl:
        import ssl

        ssl_context = ssl.create_default_context(cafile=tls.get("ssl_ca"))
        if tls.get("ssl_cert"):
            ssl_context.load_cert_chain(tls["ssl_cert"], tls.get("ssl_key"))  # type: ignore[arg-type]
    return httpclient.InferenceServerClient(
        target.address, conn_limit=max(settings.max_inflight, 1) * 2,
        conn_timeout=settings.timeout_s, ssl=use_ssl, ssl_context=ssl_context,
    )  # fmt: skip


def _guard_redirects(client: Any, target: TritonTarget, secret: bool) -> None:
    """tritonclient's HTTP session follows redirects and re-sends every header; refuse those that
    would carry a token to another origin or fall from https to plain http."""
    configs = getattr(getattr(client, "_stub", None), "trace_configs", None)
    if not isinstance(configs, list):  # pragma: no cover - another tritonclient layout
        logger.debug("%s: cannot watch redirects of this tritonclient", target)
        return

    async def on_redirect(session: Any, context: Any, params: Any) -> None:
        source = params.url
        destination = source.join(yarl.URL(params.response.headers.get("Location", "")))
        if source.scheme == "https" and destination.scheme == "http":
            raise BackendError(
                f"{target}: the server redirects to plain http ({destination.origin()}); "
                "refusing the downgrade"
            )
        if secret and destination.origin() != source.origin():
            raise BackendError(
                f"{target}: the server redirects to another origin ({destination.origin()}); "
                "refusing to send the token there"
            )

    trace = aiohttp.TraceConfig()
    trace.on_request_redirect.append(on_redirect)
    trace.freeze()
    configs.append(trace)


async def _isolated(call: Awaitable[T]) -> T:
    """Await a client call in a task of its own, so cancelling the caller works as anyio expects.

    grpc.aio answers a cancellation by raising a *new* ``CancelledError`` without the message by
    which anyio recognises its own cancel scopes, so ``fail_after``/``move_on_after`` around a
    bare gRPC call let the cancellation escape. Here the caller is cancelled while it waits on a
    shield; the call's task is then cancelled and awaited before the original error propagates.
    """
    task = asyncio.ensure_future(call)
    try:
        return await asyncio.shield(task)
    except BaseException:
        task.cancel()
        with anyio.CancelScope(shield=True), contextlib.suppress(BaseException):
            await task
        raise


def _dims(values: Any) -> tuple[int, ...]:
    """Dims from model config JSON (gRPC renders int64 as strings)."""
    return tuple(int(v) for v in values or ())


def _datatype(config_type: str) -> str:
    """``TYPE_FP32`` (config) → ``FP32`` (protocol datatype)."""
    return config_type.removeprefix("TYPE_")


@dataclass(frozen=True)
class _Slot:
    """A pair of registered system shared-memory regions: one request's input and output."""

    input_name: str
    input_handle: Any
    input_bytes: int
    output_name: str
    output_handle: Any
    output_bytes: int


class TritonBackend:
    """A model on a Triton Inference Server, scored over gRPC or HTTP (see the module doc)."""

    def __init__(
        self,
        target: TritonTarget,
        client: Any,
        headers: dict[str, str],
        settings: BackendSettings,
    ) -> None:
        self._target = target
        self._client = client
        self._headers = headers  # secrets: never log or repr
        self._timeout_s = settings.timeout_s
        self._settings = settings
        self._info: ModelInfo | None = None
        self.layout: str | None = None  # "NCHW", "NHWC" or None, from the model config
        self._triton_dtype = "FP32"
        self._batch_axis = True  # False: a non-batching model whose input has no batch axis
        self._batching = True
        self._output_dtype = np.dtype(np.float32)
        self._limiter = anyio.CapacityLimiter(max(settings.max_inflight, 1))
        self._regions: list[tuple[str, Any]] = []  # every registered region, for cleanup
        self._free_slots: list[_Slot] = []
        self._quarantined: list[_Slot] = []  # slots of requests abandoned without a reply
        self._region_sizes: dict[str, int] = {}
        self._reregistering = anyio.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"TritonBackend({self._target})"

    @property
    def info(self) -> ModelInfo:
        """Metadata of the served model."""
        if self._info is None:
            raise BackendError(f"{self._target}: not connected")
        return self._info

    @property
    def target(self) -> TritonTarget:
        """The server address, protocol and model."""
        return self._target

    @property
    def uses_shared_memory(self) -> bool:
        """Whether tensors travel through system shared memory."""
        return bool(self._regions)

    # ---------------------------------------------------------------- calls with deadlines

    async def _call(self, what: str, make: Callable[[], Awaitable[T]]) -> T:
        """Run one client call under the deadline, mapping failures to BackendError."""
        try:
            with anyio.fail_after(self._timeout_s):
                return await _isolated(make())
        except (TimeoutError, asyncio.TimeoutError) as exc:  # distinct before 3.11
            raise BackendTimeout(
                f"{self._target}: {what} got no answer within {self._timeout_s:g} s "
                "(raise timeout_s, or check the server's load)"
            ) from exc
        except InferenceServerException as exc:
            raise self._server_error(what, exc) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise TransientBackendError(
                f"{self._target}: {what} failed, cannot reach the server ({exc}); is it running?",
                unreachable=True,
            ) from exc

    def _server_error(self, what: str, exc: InferenceServerException) -> BackendError:
        status = str(exc.status() or "")
        message = " ".join(str(exc.message() or exc).split())
        if "DEADLINE_EXCEEDED" in status or "Deadline Exceeded" in message:
            return BackendTimeout(
                f"{self._target}: {what} got no answer within {self._timeout_s:g} s "
                "(raise timeout_s, or check the server's load)"
            )
        if "restricted" in message or "expecting header" in message:
            return BackendError(
                f"{self._target}: {what} was refused ({message}); the server wants a token: "
                "give it with token_env=NAME or token_file=PATH (and auth=triton for Triton's "
                "own access header)"
            )
        if "UNAVAILABLE" in status or "stopping" in message.lower():
            return TransientBackendError(
                f"{self._target}: {what} failed, cannot reach the server ({message}); "
                "is it running?",
                unreachable=True,
            )
        if "larger than max" in message and self._info is not None:
            return BackendError(
                f"{self._target}: {what}: the server's reply is larger than "
                f"{reply_limit(self._info) / 2**20:.2f} MiB, far more than these scores need "
                f"({message[:160]}); is this the right model?"
            )
        if "RESOURCE_EXHAUSTED" in status or status in TRANSIENT_HTTP:
            return TransientBackendError(f"{self._target}: {what} failed on the server: {message}")
        if "UNAUTHENTICATED" in status or "PERMISSION_DENIED" in status or status in ("401", "403"):
            return BackendError(
                f"{self._target}: {what} was refused ({message}); "
                "give a valid token with token_env=NAME or token_file=PATH"
            )
        if len(message) > 600:  # Python-backend tracebacks: keep the head and the final error
            message = f"{message[:200]} … {message[-400:]}"
        return BackendError(f"{self._target}: {what} failed on the server: {message}")

    # ---------------------------------------------------------------- connecting

    async def _connect(self) -> None:
        """Check the server and model, and read metadata and config."""
        t, h = self._target, self._headers
        timeout = self._timeout_s
        grpc = t.protocol == "grpc"
        kw: dict[str, Any] = {"headers": h, **({"client_timeout": timeout} if grpc else {})}
        try:
            await self._call("health check", lambda: self._client.is_server_live(**kw))
        except BackendTimeout:
            raise
        except BackendError as exc:
            port_hint = "gRPC, default 8001" if grpc else "HTTP, default 8000"
            raise BackendError(
                f"cannot reach a Triton server at {t.address} over {t.protocol} "
                f"({exc.__cause__ or exc}); is it running, and is that its {port_hint} port?"
            ) from exc
        ready = await self._call(
            "model readiness check",
            lambda: self._client.is_model_ready(t.model, t.version, **kw),
        )
        if not ready:
            raise BackendError(await self._not_ready_reason(kw))
        extra = {"as_json": True} if grpc else {}
        metadata = await self._call(
            "reading model metadata",
            lambda: self._client.get_model_metadata(t.model, t.version, **kw, **extra),
        )
        config = await self._call(
            "reading model config",
            lambda: self._client.get_model_config(t.model, t.version, **kw, **extra),
        )
        self._configure(metadata, config.get("config", config) if grpc else config)

    async def _not_ready_reason(self, kw: dict[str, Any]) -> str:
        """Tell "no such model" from "model not ready", naming what the server has if it says."""
        t = self._target
        try:
            await self._call(
                "reading model metadata",
                lambda: self._client.get_model_metadata(t.model, t.version, **kw),
            )
            problem = f"model {t.model!r} is not ready on the server"
        except BackendError as exc:
            server_says = str(exc).split(" failed on the server: ", 1)[-1]
            problem = f"model {t.model!r} not found on the server ({server_says})"
        try:
            index = await self._call(
                "listing models", lambda: self._client.get_model_repository_index(**kw)
            )
        except BackendError:
            return f"{t}: {problem}"  # the list may be guarded by a token; say what we know
        if hasattr(index, "models"):  # gRPC protobuf response
            index = [{"name": m.name, "state": m.state, "reason": m.reason} for m in index.models]
        entries = index.get("models", []) if isinstance(index, dict) else list(index)
        mine = [e for e in entries if e.get("name") == t.model]
        if mine:
            states = "; ".join(f"{e.get('state', '?')} {e.get('reason', '')}".strip() for e in mine)
            return f"{t}: {problem}: {states}"
        names = ", ".join(sorted({str(e.get("name")) for e in entries}))
        return f"{t}: {problem}; the repository holds: {names}" if names else f"{t}: {problem}"

    def _configure(self, metadata: Mapping[str, Any], config: Mapping[str, Any]) -> None:
        """Derive ModelInfo, layout and output choice from metadata and config."""
        t, settings = self._target, self._settings
        options = dict(settings.options)
        max_batch = int(config.get("max_batch_size", 0) or 0)
        inputs = list(config.get("input", []))
        if len(inputs) != 1:
            names = ", ".join(str(i.get("name")) for i in inputs) or "none"
            raise BackendError(f"{t}: rex-stream feeds models with one input; this one has {names}")
        model_input = inputs[0]
        self._triton_dtype = _datatype(str(model_input.get("data_type", "TYPE_FP32")))
        dtype = triton_to_np_dtype(self._triton_dtype)
        if dtype is None or np.dtype(dtype).kind not in "fiub":
            raise BackendError(f"{t}: input datatype {self._triton_dtype} is not numeric")
        fmt = str(model_input.get("format", "FORMAT_NONE")).removeprefix("FORMAT_")
        self.layout = fmt if fmt in ("NCHW", "NHWC") else None
        dims = _dims(model_input.get("dims"))
        if model_input.get("reshape") is not None:
            dims = _dims(model_input.get("reshape", {}).get("shape")) or dims
        self._batching = max_batch > 0
        if not self._batching:
            wanted = settings.input_shape
            leading_batch = len(dims) >= 2 and dims[0] in (1, -1)
            if wanted is not None:
                leading_batch = len(dims) == len(wanted) + 1 and dims[0] in (1, -1)
            self._batch_axis = leading_batch
            if leading_batch:
                dims = dims[1:]
        shape = self._resolve_shape(dims, settings.input_shape)

        outputs = list(config.get("output", [])) or list(metadata.get("outputs", []))
        output = self._choose_output(outputs, options.get("output"))
        self._output_dtype = np.dtype(
            triton_to_np_dtype(_datatype(str(output.get("data_type", "TYPE_FP32")))) or np.float32
        )
        out_dims = _dims(output.get("dims") or output.get("shape"))
        if not self._batching and self._batch_axis and out_dims[:1] in ((1,), (-1,)):
            out_dims = out_dims[1:]
        num_classes = math.prod(out_dims) if out_dims and min(out_dims) > 0 else None
        extra: dict[str, Any] = {}
        preferred = _dims((config.get("dynamic_batching") or {}).get("preferred_batch_size"))
        if preferred and "preferred_batch" in ModelInfo.__dataclass_fields__:
            extra["preferred_batch"] = max(preferred)  # the batcher's favourite batch size
        self._info = ModelInfo(
            name=t.model, input_name=str(model_input["name"]), input_shape=shape,
            dtype=np.dtype(dtype), max_batch=max_batch if self._batching else 1,
            num_classes=num_classes, output_name=str(output["name"]), **extra,
            identity={"kind": "triton", "model": str(t), "versions": metadata.get("versions"),
                      "platform": metadata.get("platform")},
        )  # fmt: skip

    def _resolve_shape(
        self, dims: tuple[int, ...], wanted: tuple[int, ...] | None
    ) -> tuple[int, ...]:
        t = self._target
        if wanted is None:
            if any(d < 0 for d in dims):
                raise ConfigError(
                    f"{t}: the model's input shape {dims} has variable axes; "
                    "give the input shape explicitly (BackendSettings.input_shape)"
                )
            return dims
        wanted = tuple(int(d) for d in wanted)
        if len(wanted) != len(dims) or any(d >= 0 and d != w for d, w in zip(dims, wanted)):
            raise ConfigError(
                f"{t}: input shape {wanted} does not fit the model's input {dims} (-1: any size)"
            )
        return wanted

    def _choose_output(
        self, outputs: list[Mapping[str, Any]], name: str | None
    ) -> Mapping[str, Any]:
        t = self._target
        names = [str(o.get("name")) for o in outputs]
        if name is not None:
            for o in outputs:
                if o.get("name") == name:
                    return o
            raise ConfigError(f"{t}: option output={name!r}: the model's outputs are {names}")
        if len(outputs) == 1:
            return outputs[0]
        raise ConfigError(
            f"{t}: the model has outputs {names}; choose the one holding scores with output=NAME"
        )

    # ---------------------------------------------------------------- shared memory

    async def _setup_shared_memory(self) -> None:
        """Create and register one input+output region pair per in-flight request."""
        import tritonclient.utils.shared_memory as shm

        info, t = self.info, self._target
        if t.host not in LOOPBACK_HOSTS:
            logger.warning("shared_memory=system with a non-loopback host %s; it needs the server "
                           "on this machine", t.host)  # fmt: skip
        if info.num_classes is None:
            raise ConfigError(f"{t}: shared_memory=system needs an output of fixed size")
        per_call = info.max_batch or 1
        in_bytes = per_call * math.prod(info.input_shape) * info.dtype.itemsize
        out_bytes = per_call * info.num_classes * self._output_dtype.itemsize
        grpc = t.protocol == "grpc"
        kw: dict[str, Any] = {"headers": self._headers}
        if grpc:
            kw["client_timeout"] = self._timeout_s
        await self._clean_stale_regions(kw)
        tag = uuid.uuid4().hex[:12]  # per run: the pid alone may come back after a reboot
        for i in range(max(self._settings.max_inflight, 1)):
            pair = []
            for kind, size in (("in", in_bytes), ("out", out_bytes)):
                name = region_name(tag, i, kind)
                handle = shm.create_shared_memory_region(name, f"/{name}", size)
                pair.append((name, handle, size))
                self._regions.append((name, handle))
                self._region_sizes[name] = size
                await self._register(name, size, kw)
            (in_name, in_handle, _), (out_name, out_handle, _) = pair
            self._free_slots.append(
                _Slot(in_name, in_handle, in_bytes, out_name, out_handle, out_bytes)
            )

    async def _register(self, name: str, size: int, kw: Mapping[str, Any]) -> None:
        await self._call(
            "registering shared memory",
            functools.partial(
                self._client.register_system_shared_memory, name, f"/{name}", size, **kw
            ),
        )

    async def _clean_stale_regions(self, kw: Mapping[str, Any]) -> None:
        """Unregister and unlink regions left by rex-stream runs whose process is gone
        (killed with SIGKILL, so they could not clean up themselves)."""
        extra = {"as_json": True} if self._target.protocol == "grpc" else {}
        try:
            status = await self._call(
                "reading shared-memory status",
                lambda: self._client.get_system_shared_memory_status(**kw, **extra),
            )
        except BackendError as exc:
            logger.debug("%s: cannot list shared memory (%s)", self._target, exc)
            status = None
        stale = [n for n in registered_regions(status) if is_stale(n)]
        for name in stale:
            with contextlib.suppress(BackendError):
                await self._call(
                    "unregistering stale shared memory",
                    lambda name=name: self._client.unregister_system_shared_memory(name, **kw),
                )
            unlink_key(name)
        leftovers = stale_local_keys()
        for name in leftovers:
            unlink_key(name)
        if stale or leftovers:
            logger.warning(
                "%s: removed %d stale shared-memory regions of killed rex-stream runs",
                self._target, len(set(stale) | set(leftovers)),
            )  # fmt: skip

    async def _reregister(self) -> None:
        """Register this run's regions again (a restarted server has forgotten them)."""
        async with self._reregistering:
            kw: dict[str, Any] = {"headers": self._headers}
            if self._target.protocol == "grpc":
                kw["client_timeout"] = self._timeout_s
            for name, size in self._region_sizes.items():
                try:
                    await self._register(name, size, kw)
                except BackendError as exc:
                    if "already" not in str(exc).lower():
                        raise

    # ---------------------------------------------------------------- inference

    async def infer(self, batch: np.ndarray) -> np.ndarray:
        """Score a batch; splits it to respect ``max_batch`` (one by one without batching)."""
        info = self.info
        batch = np.asarray(batch)
        if batch.ndim != len(info.input_shape) + 1 or batch.shape[1:] != info.input_shape:
            raise InputError(
                f"{self._target}: batch of shape {batch.shape} does not fit the model input "
                f"(n, {', '.join(map(str, info.input_shape))})"
            )
        if batch.dtype != info.dtype:
            if not np.can_cast(batch.dtype, info.dtype, casting="same_kind"):
                raise InputError(
                    f"{self._target}: batch dtype {batch.dtype} cannot be sent as the model's "
                    f"{self._triton_dtype}"
                )
            batch = batch.astype(info.dtype)
        n = batch.shape[0]
        step = info.max_batch or max(n, 1)
        if n <= step:
            return await self._infer_limited(batch)
        parts: list[np.ndarray | None] = [None] * math.ceil(n / step)

        async def run(i: int) -> None:
            parts[i] = await self._infer_limited(batch[i * step : (i + 1) * step])

        async with anyio.create_task_group() as group:
            for i in range(len(parts)):
                group.start_soon(run, i)
        return np.concatenate([p for p in parts if p is not None])

    async def _infer_limited(self, batch: np.ndarray) -> np.ndarray:
        async with self._limiter:
            if not self._free_slots and self._quarantined:
                await self._recycle()
            if self._free_slots:
                return await self._infer_shared_memory(batch)
            return await self._infer_socket(batch)

    def _request(self, batch: np.ndarray) -> tuple[Any, Any, list[int]]:
        module = grpcclient if self._target.protocol == "grpc" else httpclient
        shape = list(batch.shape) if self._batch_axis else list(batch.shape[1:])
        model_input = module.InferInput(self.info.input_name, shape, self._triton_dtype)
        output = (
            module.InferRequestedOutput(self.info.output_name)
            if module is grpcclient
            else module.InferRequestedOutput(self.info.output_name, binary_data=True)
        )
        return model_input, output, shape

    async def _send(self, batch: np.ndarray, model_input: Any, output: Any) -> Any:
        t = self._target
        kw: dict[str, Any] = {"headers": self._headers}
        if t.protocol == "grpc":
            kw["client_timeout"] = self._timeout_s
        try:
            return await self._call(
                f"inference on a batch of {batch.shape[0]}",
                lambda: self._client.infer(
                    t.model, [model_input], model_version=t.version, outputs=[output], **kw
                ),
            )
        except (TransientBackendError, BackendTimeout):
            raise
        except BackendError as exc:
            # The model was ready when we connected: now missing means unloading or reloading.
            if any(phrase in str(exc) for phrase in MODEL_RELOADING):
                raise TransientBackendError(str(exc)) from exc
            raise

    async def _infer_socket(self, batch: np.ndarray) -> np.ndarray:
        model_input, output, _ = self._request(batch)
        data = np.ascontiguousarray(batch if self._batch_axis else batch[0])
        if self._target.protocol == "grpc":
            model_input.set_data_from_numpy(data)
        else:
            model_input.set_data_from_numpy(data, binary_data=True)
        result = await self._send(batch, model_input, output)
        scores = result.as_numpy(self.info.output_name)
        if scores is None:
            raise BackendError(f"{self._target}: the response lacks output {self.info.output_name}")
        return self._scores(scores, batch.shape[0])

    async def _infer_shared_memory(self, batch: np.ndarray) -> np.ndarray:
        import tritonclient.utils.shared_memory as shm

        slot = self._free_slots.pop()
        answered = False  # the server replied: it no longer uses the slot's regions
        try:
            model_input, output, _ = self._request(batch)
            data = np.ascontiguousarray(batch)
            shm.set_shared_memory_region(slot.input_handle, [data])
            model_input.set_shared_memory(slot.input_name, data.nbytes)
            n_out = batch.shape[0] * (self.info.num_classes or 0) * self._output_dtype.itemsize
            output.set_shared_memory(slot.output_name, n_out)
            try:
                await self._send(batch, model_input, output)
            except (TransientBackendError, BackendTimeout):
                raise
            except BackendError as exc:
                answered = True
                if "shared memory region" not in str(exc).lower():
                    raise
                await self._reregister()  # the server restarted and forgot the regions
                raise TransientBackendError(f"{exc} (registered the regions again)") from exc
            answered = True
            scores = shm.get_contents_as_numpy(
                slot.output_handle, self._output_dtype, [batch.shape[0], self.info.num_classes]
            )
            return self._scores(np.array(scores, copy=True), batch.shape[0])
        finally:
            # A request abandoned without a reply (cancelled, timed out, connection lost) may
            # still run on the server and write the output region later: never lend that slot
            # to another call until the server confirms it is idle (see _recycle).
            (self._free_slots if answered else self._quarantined).append(slot)

    async def _recycle(self) -> None:
        """Give quarantined slots back once the server no longer uses their regions: Triton
        refuses to unregister a region in use, so unregistering and registering it again
        succeeds only for an idle one (or one a restarted server has forgotten)."""
        kw: dict[str, Any] = {"headers": self._headers}
        if self._target.protocol == "grpc":
            kw["client_timeout"] = self._timeout_s
        while self._quarantined:
            slot = self._quarantined.pop()
            try:
                for name, size in ((slot.input_name, slot.input_bytes),
                                   (slot.output_name, slot.output_bytes)):  # fmt: skip
                    await self._call(
                        "recycling shared memory",
                        functools.partial(self._client.unregister_system_shared_memory, name, **kw),
                    )
                    await self._register(name, size, kw)
            except BackendError as exc:
                logger.debug("%s: shared-memory slot not free yet: %s", self._target, exc)
                self._quarantined.append(slot)
                return
            self._free_slots.append(slot)

    def _scores(self, scores: np.ndarray, n: int) -> np.ndarray:
        if scores.size % max(n, 1) != 0 or (n and scores.size == 0):
            raise BackendError(
                f"{self._target}: output {self.info.output_name} has shape {scores.shape}, "
                f"which does not split into {n} rows"
            )
        return scores.reshape(n, -1)

    # ---------------------------------------------------------------- closing

    async def aclose(self) -> None:
        """Unregister shared memory and close the client; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._release_shared_memory()
        finally:
            with anyio.move_on_after(self._timeout_s, shield=True):
                await self._client.close()

    async def _unregister(self, name: str, kw: Mapping[str, Any], deadline: float) -> None:
        """Unregister one region, waiting while requests still use it, until ``deadline``."""
        while True:
            try:
                with anyio.fail_after(max(0.1, min(5.0, deadline - time.monotonic()))):
                    await _isolated(self._client.unregister_system_shared_memory(name, **kw))
                return
            except Exception as exc:
                message = str(exc)
                if "in use" in message and time.monotonic() < deadline:
                    await anyio.sleep(0.05)
                    continue
                logger.warning("%s: cannot unregister shared memory %s: %s", self._target, name,
                               " ".join(message.split()) or type(exc).__name__)  # fmt: skip
                return

    async def _release_shared_memory(self) -> None:
        if not self._regions:
            return
        import tritonclient.utils.shared_memory as shm

        kw: dict[str, Any] = {"headers": self._headers}
        if self._target.protocol == "grpc":
            kw["client_timeout"] = self._timeout_s
        # Requests abandoned by a cancelled run may still hold regions on the server ("in use")
        # until they finish: keep trying until they do, within the call deadline.
        deadline = time.monotonic() + min(max(self._timeout_s, 5.0), 60.0)
        for name, handle in self._regions:
            # The server may be gone (that is often why we are closing): best effort, bounded.
            with anyio.CancelScope(shield=True):
                await self._unregister(name, kw, deadline)
            with contextlib.suppress(Exception):
                shm.destroy_shared_memory_region(handle)
        self._regions.clear()
        self._free_slots.clear()
        self._quarantined.clear()


async def connect(spec: str, settings: BackendSettings) -> TritonBackend:
    """Open ``triton://…`` (gRPC) or ``triton+http://…`` (HTTP); check the model, read config."""
    target, query_options = parse_spec(spec)
    options = {**query_options, **dict(settings.options)}
    unknown = sorted(set(options) - KNOWN_OPTIONS)
    if unknown:
        raise ConfigError(
            f"unknown Triton backend option(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(KNOWN_OPTIONS))}"
        )
    shared_memory = options.get("shared_memory", "none").strip().lower()
    if shared_memory not in ("none", "system", ""):
        raise ConfigError(f"option shared_memory={shared_memory!r}: use system or none")
    if settings.timeout_s <= 0 or settings.max_inflight < 1:
        raise ConfigError("timeout_s must be > 0 and max_inflight >= 1")
    settings = BackendSettings(
        timeout_s=settings.timeout_s, max_inflight=settings.max_inflight,
        input_shape=settings.input_shape, options=options,
    )  # fmt: skip
    headers = auth_headers(options, target.protocol)
    client = _make_client(target, options, settings)
    if target.protocol == "http":
        _guard_redirects(client, target, secret=bool(headers))
    backend = TritonBackend(target, client, headers, settings)
    try:
        await backend._connect()
        if target.protocol == "grpc":  # now that the scores' size is known, cap the replies
            capped = _make_client(target, options, settings, reply_limit(backend.info))
            backend._client, client = capped, backend._client
            await client.close()
        if shared_memory == "system":
            await backend._setup_shared_memory()
    except BaseException:
        await backend.aclose()
        raise
    info = backend.info
    logger.info(
        "connected to %s: input %s %s %s, output %s (%s classes), max batch %s%s",
        target, info.input_name, info.input_shape, info.dtype, info.output_name,
        info.num_classes, info.max_batch, ", system shared memory" if shared_memory == "system"
        else "",
    )  # fmt: skip
    return backend

"""The Triton backend's transport: one tritonclient client (a gRPC channel or an HTTP pool) for
the run, the per-call headers and deadline built once, and ONE mapping from tritonclient's
failures to :mod:`rex_stream.errors`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Mapping
from typing import Any, TypeVar

import anyio
import numpy as np

from rex_stream.adapters.security import RedirectRules
from rex_stream.adapters.triton.options import TritonOptions
from rex_stream.adapters.triton.spec import TritonTarget
from rex_stream.engine.backend import BackendSettings, ModelInfo
from rex_stream.engine.inflight import ADAPTIVE_CEILING
from rex_stream.engine.install_hint import install_command
from rex_stream.errors import BackendError, BackendTimeout, TransientBackendError

try:
    import aiohttp
    import tritonclient.grpc.aio as grpcclient
    import tritonclient.http.aio as httpclient
    import yarl
    from tritonclient.utils import InferenceServerException, np_to_triton_dtype
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"the Triton backend needs tritonclient: {install_command('triton')}", name=exc.name
    ) from exc

logger = logging.getLogger("rex_stream.adapters.triton.backend")

T = TypeVar("T")

#: HTTP statuses of failures that may pass: overload, gateways, a server restarting.
TRANSIENT_HTTP = frozenset({"429", "500", "502", "503", "504"})
#: What Triton says when it refuses a request for load (a full queue of its batcher).
QUEUE_FULL = "maximum queue size"
#: gRPC replies are capped (a broken server cannot fill the memory): never below this floor …
REPLY_FLOOR_BYTES = 16 * 2**20
#: … and otherwise at this many bytes per score of one call (scores are 4 or 8 bytes).
REPLY_BYTES_PER_SCORE = 64
UNKNOWN_CLASSES = 1 << 16
#: … and never above this, whatever the model's configuration declares (gRPC's own limit is
#: 2 GiB; a broken server must not make the client buffer that much).
REPLY_CEILING_BYTES = 2**30
#: The most values per row a model's configuration may declare for its output.
MAX_DECLARED_CLASSES = 1 << 24


def reply_limit(info: ModelInfo) -> int:
    """The largest gRPC reply accepted: ample room for one call's scores, never below a floor."""
    per_call = (info.max_batch or 1) * (info.num_classes or UNKNOWN_CLASSES)
    return min(REPLY_CEILING_BYTES, max(REPLY_FLOOR_BYTES, per_call * REPLY_BYTES_PER_SCORE))


async def isolated(call: Awaitable[T]) -> T:
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


class TritonClient:
    """A tritonclient client with the run's headers (secrets: never logged) and deadline."""

    def __init__(
        self, target: TritonTarget, options: TritonOptions, settings: BackendSettings
    ) -> None:
        self.target = target
        self.timeout_s = settings.timeout_s
        self._options = options
        self._settings = settings
        #: what every call carries: the headers and, over gRPC, the deadline
        self._per_call: dict[str, Any] = {"headers": dict(options.headers)}
        if target.grpc:
            self._per_call["client_timeout"] = self.timeout_s
        self._reply_limit: int | None = None
        self._client = self._make(receive_limit=-1)
        if not target.grpc:
            self._guard_redirects()

    def __repr__(self) -> str:
        return f"TritonClient({self.target})"

    # ---------------------------------------------------------------- the client

    def _make(self, receive_limit: int) -> Any:
        """One client for the whole run, with TLS when asked for (gRPC replies capped at
        ``receive_limit`` bytes; -1: no cap, while metadata is read)."""
        tls, files = self._options.tls, self._options.tls_files
        if self.target.grpc:
            return grpcclient.InferenceServerClient(
                self.target.address, ssl=tls, root_certificates=files.ca_bundle,
                private_key=files.client_key, certificate_chain=files.client_cert,
                channel_args=[("grpc.max_send_message_length", -1),
                              ("grpc.max_receive_message_length", receive_limit)],
            )  # fmt: skip
        context = files.ssl_context(self.target.host, logger) if tls else None
        return httpclient.InferenceServerClient(
            # connections open as calls need them; the backend's limiter, which follows the
            # scheduler's in-flight window, bounds them (split batches may double the calls)
            self.target.address, conn_limit=2 * max(self._settings.max_inflight, ADAPTIVE_CEILING),
            conn_timeout=self.timeout_s, ssl=tls, ssl_context=context,
        )  # fmt: skip

    def _guard_redirects(self) -> None:
        """tritonclient's HTTP session follows redirects and re-sends every header; refuse those
        that would carry a token to another origin or fall from https to plain http."""
        configs = getattr(getattr(self._client, "_stub", None), "trace_configs", None)
        if not isinstance(configs, list):  # pragma: no cover - another tritonclient layout
            logger.debug("%s: cannot watch redirects of this tritonclient", self.target)
            return
        scheme = "https" if self._options.tls else "http"
        rules = RedirectRules(
            yarl.URL(f"{scheme}://{self.target.address}"), self._options.allow_insecure_redirect
        )
        where = f"{self.target}: the server"
        secret = bool(self._options.headers)

        async def on_redirect(session: Any, context: Any, params: Any) -> None:
            destination = params.url.join(yarl.URL(params.response.headers.get("Location", "")))
            rules.check(params.url, destination, where)
            if secret:
                rules.check_secret(destination, where)

        trace = aiohttp.TraceConfig()
        trace.on_request_redirect.append(on_redirect)
        trace.freeze()
        configs.append(trace)

    async def cap_replies(self, info: ModelInfo) -> None:
        """Over gRPC, replace the client by one whose replies are capped for this model."""
        self._reply_limit = reply_limit(info)
        if self.target.grpc:
            capped = self._make(self._reply_limit)
            self._client, old = capped, self._client
            await old.close()

    async def close(self) -> None:
        """Close the client (bounded, even when cancelled)."""
        with anyio.move_on_after(self.timeout_s, shield=True):
            await self._client.close()

    # ---------------------------------------------------------------- tensors

    def tensors(
        self, info: ModelInfo, datatype: str, shape: list[int], data: np.ndarray | None
    ) -> tuple[Any, Any]:
        """The request's input (with ``data`` when it travels in the request) and output."""
        if self.target.grpc:
            model_input = grpcclient.InferInput(info.input_name, shape, datatype)
            output = grpcclient.InferRequestedOutput(info.output_name)
            if data is not None:
                model_input.set_data_from_numpy(data)
        else:
            model_input = httpclient.InferInput(info.input_name, shape, datatype)
            output = httpclient.InferRequestedOutput(info.output_name, binary_data=True)
            if data is not None:
                model_input.set_data_from_numpy(data, binary_data=True)
        return model_input, output

    def named_tensors(self, arrays: Mapping[str, np.ndarray]) -> list[Any]:
        """One request input per named array (token ids, attention mask …), data included."""
        found = []
        for name, array in arrays.items():
            datatype = np_to_triton_dtype(array.dtype)
            if self.target.grpc:
                model_input = grpcclient.InferInput(name, list(array.shape), datatype)
                model_input.set_data_from_numpy(array)
            else:
                model_input = httpclient.InferInput(name, list(array.shape), datatype)
                model_input.set_data_from_numpy(array, binary_data=True)
            found.append(model_input)
        return found

    def requested_output(self, name: str) -> Any:
        """A request for output ``name`` (binary over HTTP)."""
        if self.target.grpc:
            return grpcclient.InferRequestedOutput(name)
        return httpclient.InferRequestedOutput(name, binary_data=True)

    # ---------------------------------------------------------------- calls

    async def call(self, what: str, method: str, *args: Any, **extra: Any) -> Any:
        """Run one client call under the deadline, mapping failures to BackendError."""
        try:
            with anyio.fail_after(self.timeout_s):
                return await isolated(self._start(method, args, extra))
        except (TimeoutError, asyncio.TimeoutError) as exc:  # distinct before 3.11
            raise BackendTimeout(self._no_answer(what)) from exc
        except InferenceServerException as exc:
            raise self._server_error(what, exc) from exc
        except (aiohttp.ClientError, OSError) as exc:
            refused = isinstance(exc, (aiohttp.ClientConnectorError, ConnectionRefusedError))
            raise TransientBackendError(  # a dropped connection retries this call alone
                f"{self.target}: {what} failed, cannot reach the server ({exc}); is it running?",
                unreachable=refused,
            ) from exc

    async def attempt(self, timeout_s: float, method: str, *args: Any, **extra: Any) -> Any:
        """Run one client call within ``timeout_s``, its failures unmapped (for clean-up)."""
        with anyio.fail_after(timeout_s):
            return await isolated(self._start(method, args, extra))

    def _start(self, method: str, args: tuple[Any, ...], extra: dict[str, Any]) -> Awaitable[Any]:
        # a copy of the headers per call: tritonclient's HTTP client writes the request's own
        # Inference-Header-Content-Length into the dict it is given, which a shared dict
        # would carry into the next request (a JSON-only shared-memory one, cut short there)
        per_call = {**self._per_call, "headers": dict(self._per_call["headers"])}
        result: Awaitable[Any] = getattr(self._client, method)(*args, **per_call, **extra)
        return result

    def _no_answer(self, what: str) -> str:
        return (
            f"{self.target}: {what} got no answer within {self.timeout_s:g} s "
            "(raise timeout_s, or check the server's load)"
        )

    def _server_error(self, what: str, exc: InferenceServerException) -> BackendError:
        """The one mapping from what Triton answered to the library's errors."""
        status = str(exc.status() or "")
        message = " ".join(str(exc.message() or exc).split())
        t = self.target
        if "DEADLINE_EXCEEDED" in status or "Deadline Exceeded" in message:
            return BackendTimeout(self._no_answer(what))
        if "restricted" in message or "expecting header" in message:
            return BackendError(
                f"{t}: {what} was refused ({message}); the server wants a token: "
                "give it with token_env=NAME or token_file=PATH (and auth=triton for Triton's "
                "own access header)"
            )
        if QUEUE_FULL in message:  # before UNAVAILABLE: the server is busy, not gone
            return self._overloaded(what, message)
        if "UNAVAILABLE" in status or "stopping" in message.lower():
            return TransientBackendError(
                f"{t}: {what} failed, cannot reach the server ({message}); is it running?",
                unreachable=True,
            )
        if "larger than max" in message and self._reply_limit is not None:
            return BackendError(
                f"{t}: {what}: the server's reply is larger than "
                f"{self._reply_limit / 2**20:.2f} MiB, far more than these scores need "
                f"({message[:160]}); is this the right model?"
            )
        if "RESOURCE_EXHAUSTED" in status or status == "429":
            return self._overloaded(what, message)
        if status in TRANSIENT_HTTP:
            return TransientBackendError(f"{t}: {what} failed on the server: {message}")
        if "UNAUTHENTICATED" in status or "PERMISSION_DENIED" in status or status in ("401", "403"):
            return BackendError(
                f"{t}: {what} was refused ({message}); "
                "give a valid token with token_env=NAME or token_file=PATH"
            )
        if len(message) > 600:  # Python-backend tracebacks: keep the head and the final error
            message = f"{message[:200]} … {message[-400:]}"
        return BackendError(f"{t}: {what} failed on the server: {message}")

    def _overloaded(self, what: str, message: str) -> TransientBackendError:
        """A refusal for load: retried, and fewer calls go in flight (the server's limit)."""
        return TransientBackendError(
            f"{self.target}: {what} was refused for load: {message}", overloaded=True
        )

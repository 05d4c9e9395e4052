"""Where a Triton spec points: ``triton[+grpc|+http]://host[:port]/model[/version][?options]``."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from rex_stream.errors import ConfigError

DEFAULT_PORTS = {"grpc": 8001, "http": 8000}
SCHEMES = {"triton": "grpc", "triton+grpc": "grpc", "triton+http": "http"}
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


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

    @property
    def grpc(self) -> bool:
        """Whether the server is spoken to over gRPC (else HTTP/REST)."""
        return self.protocol == "grpc"

    @property
    def on_this_host(self) -> bool:
        """Whether the server address is a loopback one (needed for shared memory)."""
        return self.host in LOOPBACK_HOSTS

    def __str__(self) -> str:
        scheme = "triton" if self.grpc else "triton+http"
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

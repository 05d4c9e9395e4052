"""Triton Inference Server backend: ``triton://host:8001/model[/version]`` (gRPC) and
``triton+http://host:8000/model[/version]`` (HTTP/REST, binary tensors).

The model's input and output names, datatypes, shapes, ``max_batch_size`` and input layout are
read from the server. One client (one gRPC channel, or one HTTP connection pool) serves the whole
run; every call carries a deadline. Options (``BackendSettings.options`` or the spec's query
string, e.g. ``triton://host:8001/resnet?output=logits``):

- ``output=NAME``: the output holding the scores, when the model has several;
- ``ssl=true`` with ``ca_bundle=PATH``, ``client_cert=PATH``, ``client_key=PATH`` (and, over
  HTTP only, ``insecure=true``): TLS to the server; a TLS option alone turns TLS on;
- ``token_env=NAME`` or ``token_file=PATH``: a secret sent with every request (never logged), as
  ``authorization: Bearer …`` (``auth=bearer``, the default), as Triton's own restricted-API
  header ``triton-access-token`` (``auth=triton``), or as a custom header (``auth_header=NAME``);
  ``header.NAME=VALUE|env:VAR|file:PATH`` sends any other header;
- ``allow_insecure_redirect=true`` (HTTP): follow a redirect from https to plain http;
- ``shared_memory=system``: pass tensors through Triton's system shared-memory extension
  (server on the same host only). Regions are named per run and process
  (``rex-stream-<pid>-<tag>-…``), unregistered on every exit the process survives, and those
  of killed runs are cleaned by the next run (see :mod:`.shm`).

Secrets, TLS and redirects are spelled as for the HTTP backend
(:mod:`rex_stream.adapters.security`); ``ssl_ca``, ``ssl_cert`` and ``ssl_key`` still work, with
a ``DeprecationWarning``. Modules: :mod:`.spec` (the target), :mod:`.options`, :mod:`.client`
(the transport and its error mapping), :mod:`.model` (metadata → ModelInfo), :mod:`.shm` (the
shared-memory pool), :mod:`.backend` (inference).
"""

from rex_stream.adapters.triton.backend import TritonBackend, connect
from rex_stream.adapters.triton.spec import TritonTarget, parse_spec

__all__ = ["TritonBackend", "TritonTarget", "connect", "parse_spec"]

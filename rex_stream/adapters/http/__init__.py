"""HTTP backend: models behind the Open Inference Protocol (v2), row-JSON or custom JSON endpoints.

Spec: the endpoint URL. For v2 it is the model URL, e.g. ``http://host:8000/v2/models/resnet``
(metadata is read from it, batches go to ``…/infer``); for ``rows`` and ``custom`` it is the URL
batches are POSTed to, and the input shape comes from ``--input-shape``.

Options (``settings.options``, all strings; ``--backend-option KEY=VALUE`` on the command line):

- ``protocol``: ``v2`` (binary tensors when the server advertises ``binary_tensor_data``, JSON
  otherwise), ``v2-json``, ``v2-binary``, ``rows`` or ``custom``. Default: ``custom`` when a
  template is given, ``v2`` for ``/v2/models/`` URLs, ``rows`` otherwise.
- ``template=PATH``: the custom protocol's template (see :class:`CustomTemplate`).
- ``max_batch=N``: largest batch per request (default: from the server's metadata, if any).
  A 413 (or a "batch too large" reply) halves it and retries, and the smaller limit sticks.
- ``gzip=true``: gzip request bodies. Replies are decompressed whenever the server gzips them.
- ``input``/``output``: which v2 tensors to use when the model has several.
- secrets, TLS and redirects, spelled as for Triton (:mod:`rex_stream.adapters.security`):
  ``header.NAME=VALUE|env:VAR|file:PATH``, ``token_env``/``token_file`` (+ ``auth``,
  ``auth_header``), ``ca_bundle``, ``client_cert``, ``client_key``, ``insecure``,
  ``allow_insecure_redirect``. Redirects are followed by hand: secrets go only to the origin
  (scheme, host, port) of the configured URL, never to another one.

Modules: :mod:`.options` (parsing), :mod:`.transport` (the session, redirects, the reply cap and
the mapping of aiohttp failures), :mod:`.replies` (what a status means), :mod:`.metadata` (the
model), :mod:`.protocols` and :mod:`.v2` (wire formats), :mod:`.backend` (batches and scores).
"""

from rex_stream.adapters.http.backend import HttpBackend, connect
from rex_stream.adapters.http.options import HttpOptions
from rex_stream.adapters.http.protocols import CustomTemplate

__all__ = ["CustomTemplate", "HttpBackend", "HttpOptions", "connect"]

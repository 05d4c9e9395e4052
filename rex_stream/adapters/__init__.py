"""Backend adapters, one module per kind of model server (installed as ``rex_stream.adapters``)."""

"""What ReX users bring along: ReX's sqlite results database (``-db``) and its ``rex.toml``
configuration file, read and written the way ReX 0.4.1 does."""

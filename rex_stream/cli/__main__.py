"""``python -m rex_stream.cli``: the command line."""

import sys

from rex_stream.cli.main import main

sys.exit(main())

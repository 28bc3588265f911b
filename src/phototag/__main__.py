"""``python -m phototag``: the same as the ``phototag`` command."""

import sys

from phototag.app.cli import main

sys.exit(main())

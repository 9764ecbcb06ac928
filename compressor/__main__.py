"""`python -m compressor ...` (and `torchrun ... -m compressor run recipe.yaml`): the CLI."""

import sys

from compressor.flows.cli import main

sys.exit(main())

"""`python -m hyperstition ...` is the `hyperstition` command (and `torchrun ... -m hyperstition pretrain ...` works)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())

"""`python -m hyperstition ...` is the `hyperstition` command; `torchrun ... -m hyperstition pretrain ...` works too."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())

"""`python -m hyperstition.experiments run|status|query|report|compare ...` (the same commands as `hyperstition`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())

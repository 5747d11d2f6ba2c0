"""`python -m maildrill.examples.postfix start|stop|status|configure`."""

from __future__ import annotations

import sys

from maildrill.examples.postfix.postfix_sut import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""`python -m maildrill.examples.mailer`: parse flags and environment, then serve until SIGTERM/SIGINT."""

from __future__ import annotations

import sys

from maildrill.examples.mailer.service import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

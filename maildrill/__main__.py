"""`python -m maildrill` is the `maildrill` command."""

import sys

from maildrill.harness.cli import main

sys.exit(main())

import sys

from maildrill.harness.cli import main

sys.exit(main())

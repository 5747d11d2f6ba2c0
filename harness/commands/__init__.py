"""One module per `maildrill` subcommand (see harness.cli)."""

"""One module per `maildrill` subcommand (see maildrill.harness.cli)."""

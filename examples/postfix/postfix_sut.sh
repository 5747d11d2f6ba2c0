#!/bin/sh
# Start/stop/status of a private Postfix instance relaying to maildrill's fake MTA (see docs/reference-mailer.md).
# Usage: examples/postfix/postfix_sut.sh start|stop|status [--dir DIR] [--port P] [--relay-port R] [--fresh]
set -eu
cd "$(dirname "$0")/../.."
PYTHON="${PYTHON:-.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3
exec "$PYTHON" -m maildrill.examples.postfix "$@"

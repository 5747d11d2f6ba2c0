"""`maildrill init [DIR]`: a starter drill for the user's own app, and a short README, in DIR (default drills/)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

HELP = "write a starter drill for your own app (and a short README) into DIR (default: drills/)"

DRILL_FILE = "my-app.yaml"

STARTER = """\
# {name} — a starter drill for your own app, written by `maildrill init`. Out of the box it drives
# maildrill's reference mailer, so `maildrill run {path}` works before you change anything;
# then point `sut:` at your app, shape the load like your launch day, and set the thresholds you
# promise your users. Check it with `maildrill validate {path}` (every problem, with its line).
# Every key is described in maildrill's docs/scenarios.md; `maildrill schema` gives editors completion.
version: 1
name: {name}
description: Launch-day spike into a throttling, greylisting relay; do OTPs and resets still arrive in time?
seed: 1                        # every random choice; `maildrill run --seed N` overrides it
duration_s: 30                 # the load phase (scenario seconds)
drain_timeout_s: 60            # then wait up to this long for every requested message to be delivered
# time_scale: 0.1              # replay a 5-minute drill in 30 s (every time below is in scenario time)

# The fake receiving side: real SMTP servers on 127.0.0.1. The first one is your app's relay.
mtas:
  - name: relay
    preset: gmail              # reply texts of gmail, microsoft, yahoo, ses, postgrey or haraka
    behaviors:
      - {{kind: throttle, rate_per_s: 10, burst: 10}}   # 421 4.4.5 above 10 messages/s
  # - name: backup             # a second vendor: your app gets MAILDRILL_SMTP_BACKUP_HOST/_PORT
# Your app sends through an email API (SendGrid, SES, Postmark, Mailgun, Resend) instead of SMTP? Declare
# fake vendors under `vendors:` and point its SDK at MAILDRILL_API_URL (docs/scenarios.md, `vendors`).

# Your system under test. maildrill starts `command` with these in its environment:
#   MAILDRILL_SUT_PORT                       the HTTP port your app must listen on
#   MAILDRILL_SMTP_HOST / MAILDRILL_SMTP_PORT where it must send mail (the first MTA above)
# `python` means the interpreter maildrill runs in. Replace the reference mailer with your app, e.g.
#   command: [python, -m, myapp.server]      or   command: [./bin/start-mailer, --port, "$MAILDRILL_SUT_PORT"]
# Already running elsewhere? Replace `command:` by `url: http://127.0.0.1:8000`, or keep it and run
# `maildrill run {path} --sut-url http://127.0.0.1:8000` (the URL wins; nothing is started).
# Keep the recipient the load sends you unchanged: its local part is the message's correlation id.
sut:
  command: [python, -m, maildrill.examples.mailer, --profile, hardened]
  ready: {{http: /healthz, timeout_s: 30}}   # ready once GET /healthz answers 2xx (omit `http` for a TCP check)
  # queue_depth: {{http: /metrics, metric: mailer_queue_depth}}   # your queue's own gauge, if it has one

# The traffic: requests per second over the load phase, split into classes of mail.
load:
  shape: {{kind: spike, base_rps: 2, peak_rps: 15, start_s: 5, hold_s: 10}}
  recipient: "{{corr}}@users.drill.test"
  classes:
    - name: otp
      weight: 3                # three OTPs for every password reset
      ttl_s: 60                # delivered later than this counts as expired
      request: {{method: POST, path: /otp, json: {{email: "{{recipient}}"}}}}
    - name: password_reset
      weight: 1
      ttl_s: 300
      request: {{method: POST, path: /password-reset, json: {{email: "{{recipient}}"}}}}

# Faults switched on and off while the load runs (`for_s` undoes the action after that long).
timeline:
  - {{at_s: 8, mta: relay, set: [{{kind: greylist, min_delay_s: 2, retry_window_s: 600}}], for_s: 6}}
  - {{at_s: 18, mta: relay, set: [{{kind: go_dark, mode: refuse}}], for_s: 4}}   # the relay refuses connections

# The verdict: each threshold names a metric (README.md lists them all), narrowed with [class] or [mta].
thresholds:
  otp_expired_ratio[otp]: {{max: 0}}     # every OTP within its TTL
  latency_p99_s[otp]: {{max: 30}}
  duplicates: {{max: 0}}                 # nobody gets the same message twice
  permanent_failures_retried: {{max: 0}} # a 5xx is never retried
  drain_s: {{max: 30}}                   # the queue is empty within 30 s of the last fault
"""

README = """\
# Email drills

`{drill}` is a maildrill drill: a scenario that starts fake mail servers, your app, launch-day
load and faults (throttling, greylisting, an outage), then checks every message against thresholds.

```sh
maildrill validate {drill}        # check it (no servers started)
maildrill run {drill}             # run it; exit 0 pass, 1 thresholds failed; report in reports/<run-id>/
maildrill run {drill} --sut-url http://127.0.0.1:8000   # drive an app that is already running
maildrill scenarios                       # the bundled drills (`maildrill show NAME` prints one to copy from)
```

It drives maildrill's reference mailer until you edit `sut:` to start your own app (the comments in
the file say what your app is given and must do).

Docs: maildrill's README (its PyPI page) and the `docs/` folder of its repository — `scenarios.md` (every
key of this file), `fake-mta.md` (the fake servers' behaviours and provider presets), `fault-proxy.md`
(network faults), `pytest-plugin.md` (fixtures and assertions for your unit tests). `maildrill schema -o
scenario.schema.json` gives your editor completion; `maildrill run --help` lists the run options.
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", nargs="?", type=Path, default=Path("drills"), metavar="DIR",
                        help="where to write the files (default: drills/; created if missing)")
    parser.add_argument("--name", default="my-app",
                        help="the drill's name (its file is NAME.yaml; names the run directories)")


def main(args: argparse.Namespace) -> int:
    from maildrill.harness.errors import UsageError
    from maildrill.harness.scenario.loading import parse_scenario_text

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}", args.name):
        raise UsageError(f"--name {args.name!r}: must be 1-63 letters, digits, '_' or '-', starting with a letter "
                         "or digit")
    directory: Path = args.dir
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{directory}: exists and is not a directory")
    drill = directory / f"{args.name}.yaml"
    readme = directory / "README.md"
    taken = [p for p in (drill, readme) if p.exists() or p.is_symlink()]
    if taken:
        raise UsageError(f"not overwriting {', '.join(map(str, taken))}; move them away or pick another DIR")
    text = STARTER.format(name=args.name, path=drill.as_posix())
    parse_scenario_text(text, source=str(drill))  # the starter must always validate; a bug here is ours
    directory.mkdir(parents=True, exist_ok=True)
    drill.write_text(text, encoding="utf-8")
    readme.write_text(README.format(drill=drill.as_posix()), encoding="utf-8")
    print(f"wrote {drill} (a starter drill: edit `sut:` to start your app) and {readme}")
    print(f"next: maildrill validate {drill}  &&  maildrill run {drill}")
    return 0

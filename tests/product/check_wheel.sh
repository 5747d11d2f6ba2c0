#!/usr/bin/env bash
# The product as users get it: build the wheel, install it (not editable) into a fresh virtualenv outside
# the checkout, and from an empty directory there run what a pip user runs first. `make test-wheel`; CI
# runs it after `make test`. Prints one PASS/FAIL line last; exits non-zero on any failure.
#   PYTHON=python3.12 tests/product/check_wheel.sh     # the interpreter for the fresh virtualenv
#   KEEP=1 tests/product/check_wheel.sh                # keep the scratch directory (printed) to look around
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
PYTHON="${PYTHON:-python3}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/maildrill-wheel-check.XXXXXX")"
STEP="setting up"
STARTED=$SECONDS

finish() {
    code=$?
    if [ "${KEEP:-0}" = 1 ]; then echo "check_wheel: scratch directory kept: $WORK"; else rm -rf "$WORK"; fi
    if [ "$code" = 0 ]; then
        echo "check_wheel: PASS — the installed wheel works from outside the checkout ($((SECONDS - STARTED)) s)"
    else
        echo "check_wheel: FAIL at: $STEP (exit $code)" >&2
    fi
    exit "$code"
}
trap finish EXIT

step() { STEP="$1"; echo; echo "== $1"; }
fail() { echo "check_wheel: $*" >&2; exit 1; }
show() { echo "\$ $*"; "$@"; }   # print a command, then run it
quiet() {  # print a command, run it with its output in a log that is shown only when it fails
    echo "\$ $*"
    "$@" >"$WORK/quiet.log" 2>&1 || { code=$?; grep -v "^WARNING: Location 'file:" "$WORK/quiet.log" >&2; return $code; }
}

step "build the wheel (pip wheel --no-deps . -w dist/)"
cd "$ROOT"
rm -rf build dist/maildrill-*.whl   # a stale build/ would put deleted modules into the wheel
"$PYTHON" -m venv "$WORK/venv"
VENV="$WORK/venv"
quiet "$VENV/bin/python" -m pip wheel -q --disable-pip-version-check --no-deps . -w dist/
WHEEL="$(ls "$ROOT"/dist/maildrill-*.whl)"
echo "built $WHEEL"

step "the wheel's top-level entries are maildrill/ and maildrill-*.dist-info/ only"
unzip -Z1 "$WHEEL" > "$WORK/wheel-files.txt"
top="$(cut -d/ -f1 "$WORK/wheel-files.txt" | sort -u)"
echo "$top"
extra="$(echo "$top" | grep -Ev '^(maildrill|maildrill-[^/]+\.dist-info)$' || true)"
[ -z "$extra" ] || fail "unexpected top-level entries in the wheel: $extra"
for f in maildrill/scenarios/throttle-421-storm.yaml maildrill/compose/docker-compose.yml \
         maildrill/examples/mailer/__main__.py maildrill/harness/pytest_plugin.py maildrill/fake_mta/server.py; do
    grep -qx "$f" "$WORK/wheel-files.txt" || fail "$f is not in the wheel"
done

step "install it, not editable, into a fresh virtualenv (pip's cache reused)"
quiet "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-compile "$WHEEL" pytest
PROJ="$WORK/project"   # an empty directory outside the checkout: nothing of the checkout is importable here
mkdir "$PROJ"
cd "$PROJ"
export PATH="$VENV/bin:$PATH"
where="$(python -c 'import maildrill, pathlib; print(pathlib.Path(maildrill.__file__).resolve())')"
echo "maildrill imported from $where"
case "$where" in "$VENV"/*) ;; *) fail "maildrill was imported from $where, not from the fresh virtualenv";; esac
python -c 'import importlib.util as u, sys; sys.exit(any(u.find_spec(m) for m in ("harness", "fake_mta", "examples", "scenarios")))' \
    || fail "the install put a top-level harness/fake_mta/examples/scenarios package on sys.path"

step "maildrill --version"
want="maildrill $(basename "$WHEEL" | cut -d- -f2)"
got="$(show maildrill --version)"; echo "$got"
[ "$(echo "$got" | tail -1)" = "$want" ] || fail "maildrill --version printed '$got', expected '$want'"
[ "$(python -m maildrill --version)" = "$want" ] || fail "python -m maildrill --version differs from maildrill --version"

step "maildrill scenarios"
show maildrill scenarios | tee "$WORK/scenarios.txt"
n_bundled="$(ls "$ROOT"/scenarios/*.yaml | wc -l)"
grep -q "^$n_bundled drills\. " "$WORK/scenarios.txt" || fail "maildrill scenarios did not list all $n_bundled bundled drills"
for f in "$ROOT"/scenarios/*.yaml; do
    name="$(basename "$f" .yaml)"
    grep -Eq "^$name +[A-Z0-9]" "$WORK/scenarios.txt" || fail "maildrill scenarios: no line (with a purpose) for $name"
done
maildrill show ci-retry-regression | cmp - "$ROOT/scenarios/ci-retry-regression.yaml" \
    || fail "maildrill show ci-retry-regression differs from scenarios/ci-retry-regression.yaml"
echo "maildrill show ci-retry-regression: identical to scenarios/ci-retry-regression.yaml"
set +e; maildrill run no-such-drill >"$WORK/out.txt" 2>&1; code=$?; set -e
[ "$code" = 2 ] && grep -q "bundled drills (\`maildrill scenarios\`): .*throttle-421-storm" "$WORK/out.txt" \
    || fail "maildrill run no-such-drill: exit $code, expected 2 and the list of bundled drills: $(cat "$WORK/out.txt")"
echo "maildrill run no-such-drill: exit 2, lists the bundled drills"

step "every bundled drill's sut.command runs from the install"
python - "$ROOT/scenarios" <<'PY'
import subprocess, sys
from pathlib import Path
import yaml
from maildrill.harness.bundled import bundled_drills
from maildrill.harness.scenario.loading import load_scenario
names = sorted(p.stem for p in Path(sys.argv[1]).glob("*.yaml"))
assert [d.name for d in bundled_drills()] == names, ([d.name for d in bundled_drills()], names)
modules = set()
for d in bundled_drills():
    s = load_scenario(d.path)  # every bundled drill validates from the install
    for cmd in [s.sut.command if s.sut else None,
                s.sut.queue_depth.command if s.sut and s.sut.queue_depth else None]:
        if cmd and cmd[0] in ("python", "python3") and cmd[1] == "-m":
            modules.add(cmd[2])
for m in sorted(modules):
    p = subprocess.run([sys.executable, "-m", m, "--help"], capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.startswith("usage: python -m " + m), (m, p.returncode, p.stderr[-500:])
    print(f"python -m {m} --help: ok")
PY
maildrill mailer --help > "$WORK/out.txt"
head -1 "$WORK/out.txt" | grep -q "^usage: python -m maildrill.examples.mailer" || fail "maildrill mailer --help"
echo "maildrill mailer --help: ok"

step "maildrill mta and maildrill proxy serve on uvloop from the install"
python - <<'PY'
import signal, subprocess, sys
for cmd, ready in ((["maildrill", "mta", "--port", "0"], "maildrill mta: ready ("),
                   (["maildrill", "proxy", "--port", "0"], "ready (")):
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = next((ln for ln in proc.stdout if ln.startswith(ready)), "")  # ends at EOF if it dies
        assert line.startswith(ready + "uvloop;"), (cmd, line, proc.poll())
        print(f"$ {' '.join(cmd)}: {line.strip()}")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, (cmd, proc.returncode, err)
PY

step "maildrill init + maildrill validate"
show maildrill init
show maildrill validate drills/my-app.yaml
set +e; maildrill init >"$WORK/out.txt" 2>&1; code=$?; set -e
[ "$code" = 2 ] && grep -q "not overwriting drills/my-app.yaml, drills/README.md" "$WORK/out.txt" \
    || fail "a second maildrill init: exit $code (expected 2, naming both files): $(cat "$WORK/out.txt")"
echo "a second maildrill init: exit 2, $(cat "$WORK/out.txt")"

step "a bundled drill end to end against the shipped reference mailer (maildrill run ci-retry-regression)"
set +e; show maildrill run ci-retry-regression --quiet; code=$?; set -e
[ "$code" = 0 ] || fail "maildrill run ci-retry-regression exited $code (expected 0, a pass)"
run_dir="$(ls -d "$PROJ"/reports/*-ci-retry-regression-s11)"
for f in report.html summary.json junit.xml manifest.json events sut/stdout.log; do
    [ -e "$run_dir/$f" ] || fail "the run directory lacks $f"
done
python - "$run_dir" <<'PY'
import json, sys
from pathlib import Path
run = Path(sys.argv[1])
manifest = json.loads((run / "manifest.json").read_text())
summary = json.loads((run / "summary.json").read_text())
assert manifest["status"] == "completed", manifest["status"]
assert manifest["event_loop"] == "uvloop", manifest.get("event_loop")
assert manifest["reproduce"].startswith("maildrill run ci-retry-regression --seed 11"), manifest["reproduce"]
assert summary["verdict"]["passed"] is True, summary["verdict"]
delivered = summary["metrics"]["delivered"]
assert delivered > 0, delivered
print(f"run {run.name}: completed on uvloop, verdict PASS, {delivered} delivered; reports under ./reports/")
PY

step "pytest in a project with its own harness/ and fake_mta/ packages, using maildrill's fixtures"
mkdir -p harness fake_mta tests
cat > harness/__init__.py <<'PY'
"""This project's own test harness (the name is common; maildrill must not take it)."""
def project_name():
    return "shop"
PY
cat > fake_mta/__init__.py <<'PY'
"""This project's own fake MTA module."""
RELAY = "relay.shop.test"
PY
cat > tests/test_own.py <<'PY'
import fake_mta
import harness


def test_the_projects_own_harness_is_the_one_imported():
    assert harness.project_name() == "shop"
    assert fake_mta.RELAY == "relay.shop.test"
PY
cat > tests/test_mail.py <<'PY'
import smtplib

import maildrill


def send(host, port, rcpt):
    with smtplib.SMTP(host, port, timeout=10) as smtp:
        smtp.sendmail("app@shop.test", [rcpt], "Subject: code\r\n\r\n123456")


def test_fake_mta_and_mail_events(fake_mta, mail_events):
    send(fake_mta.host, fake_mta.port, "u000001@users.drill.test")
    assert [e.corr for e in fake_mta.accepted()] == ["u000001"]
    maildrill.assert_no_duplicates(mail_events)


def test_a_bounce_is_seen_as_a_5xx(make_fake_mta, mail_events):
    mta = make_fake_mta(behaviors=[{"kind": "reject", "reason": "unknown_user"}])
    try:
        send(mta.host, mta.port, "u000002@users.drill.test")
    except smtplib.SMTPRecipientsRefused as exc:
        assert exc.recipients["u000002@users.drill.test"][0] == 550
    else:
        raise AssertionError("the fake MTA accepted a recipient it was told to reject")
    maildrill.assert_no_5xx_retried(mail_events)


def test_fault_proxy(fake_mta, fault_proxy):
    proxy = fault_proxy.proxy_for(fake_mta)
    send(proxy.listen_host, proxy.listen_port, "u000003@users.drill.test")
    assert [e.corr for e in fake_mta.accepted()] == ["u000003"]
PY
set +e; show python -m pytest -q -p no:cacheprovider tests 2>&1 | tee "$WORK/pytest.txt"; code=${PIPESTATUS[0]}; set -e
[ "$code" = 0 ] || fail "pytest in the scratch project exited $code"
grep -Eq "^4 passed in " "$WORK/pytest.txt" || fail "expected exactly '4 passed' from the scratch project's pytest"

step "the sample CI suite from the install (pytest --pyargs maildrill.examples.ci)"
set +e; show python -m pytest -q -p no:cacheprovider --pyargs maildrill.examples.ci 2>&1 | tee "$WORK/pytest.txt"
code=${PIPESTATUS[0]}; set -e
[ "$code" = 0 ] || fail "pytest --pyargs maildrill.examples.ci exited $code"
grep -Eq "^6 passed, 3 xfailed in " "$WORK/pytest.txt" || fail "expected '6 passed, 3 xfailed' from the sample suite"

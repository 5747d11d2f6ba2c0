"""`maildrill mta` with a vendor's webhooks: the ready banner says where they go and the key that verifies
them; a path-only webhooks.url (which needs a drill's SUT) is refused with exit 2 and the fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sendgrid.helpers.eventwebhook import EventWebhook


def test_standalone_banner_names_the_webhook_url_and_verification_key(tmp_path: Path) -> None:
    cfg = tmp_path / "fleet.yaml"
    cfg.write_text("vendors:\n  - name: sg\n    api: sendgrid\n"
                   "    webhooks: {url: 'http://127.0.0.1:9/hooks', secret: drill-passphrase}\n")
    lines = []
    with subprocess.Popen([sys.executable, "-m", "maildrill", "mta", "--config", str(cfg)],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as proc:
        try:
            for line in proc.stdout:  # type: ignore[union-attr]
                lines.append(line.rstrip("\n"))
                if line.startswith("maildrill mta: ready"):
                    break
        finally:
            proc.terminate()
            proc.wait(30)
    hook = [ln for ln in lines if ln.startswith("maildrill mta: sg webhooks ")]
    assert len(hook) == 1
    prefix = "maildrill mta: sg webhooks http://127.0.0.1:9/hooks verification key "
    assert hook[0].startswith(prefix)
    EventWebhook().convert_public_key_to_ecdsa(hook[0].removeprefix(prefix))  # a key SendGrid's helper reads


def test_a_path_url_standalone_is_a_usage_error(tmp_path: Path) -> None:
    cfg = tmp_path / "fleet.yaml"
    cfg.write_text("vendors:\n  - name: sg\n    api: sendgrid\n    webhooks: {url: /hooks/sendgrid}\n")
    proc = subprocess.run([sys.executable, "-m", "maildrill", "mta", "--config", str(cfg)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "maildrill mta: vendors[0].webhooks.url = '/hooks/sendgrid': a path on the system under test needs a drill "
        "to resolve it; standalone, give the full URL (http://127.0.0.1:PORT/hooks/...)")

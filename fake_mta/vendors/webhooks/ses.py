"""Amazon SES event publishing through an SNS HTTP/S subscription: each POST is an SNS envelope.

Headers ``x-amz-sns-message-type`` (SubscriptionConfirmation first, then Notification), ``x-amz-sns-message-id``,
``x-amz-sns-topic-arn``; body ``{"Type", "MessageId", "TopicArn", "Message", "Timestamp", "SignatureVersion": "2",
"Signature", "SigningCertURL", "UnsubscribeURL"}`` with ``Message`` the SES event as a JSON string
(``eventType`` Send, DeliveryDelay, Delivery, Bounce with ``bounceType`` Permanent/Transient, Reject). The
signature is SNS's: RSA / SHA-256 over the documented "key\\nvalue\\n" string, with a self-signed certificate the
fake vendor serves at ``SigningCertURL``. SNS's default HTTP/S policy: 3 retries 20 s apart, then the message is
discarded; a retry reuses the envelope's ``MessageId``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from maildrill.fake_mta.vendors.webhooks.format import Format, Notice, b64, iso, jbytes, now_epoch
from maildrill.fake_mta.webhook_spec import WebhookSpec

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

ACCOUNT = "123456789012"
REGION = "us-east-1"
CERT_PATH = "/_maildrill/sns/SimpleNotificationService.pem"
CONFIRM_PATH = "/_maildrill/sns/confirm"
UNSUBSCRIBE_PATH = "/_maildrill/sns/unsubscribe"
EVENT = {"processed": "Send", "deferred": "DeliveryDelay", "delivered": "Delivery", "bounce": "Bounce",
         "dropped": "Reject"}
NOTIFICATION_KEYS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
CONFIRMATION_KEYS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")


def string_to_sign(envelope: dict[str, str]) -> bytes:
    """SNS's canonical string: each present key of the message type's list, as "key\\nvalue\\n", in order."""
    keys = NOTIFICATION_KEYS if envelope["Type"] == "Notification" else CONFIRMATION_KEYS
    return "".join(f"{k}\n{envelope[k]}\n" for k in keys if k in envelope).encode()


class SESEvents(Format):
    api = "ses"
    retry_delays_s = (20.0, 20.0, 20.0)
    content_type = "text/plain; charset=UTF-8"

    def __init__(self, spec: WebhookSpec, rng: random.Random, vendor_name: str,
                 base_url: Callable[[], str] | None = None) -> None:
        super().__init__(spec, rng, vendor_name)
        self.base_url = base_url or (lambda: "http://127.0.0.1")
        self.topic_arn = f"arn:aws:sns:{REGION}:{ACCOUNT}:maildrill-{vendor_name}"
        self.subscription_arn = f"{self.topic_arn}:{self._uuid()}"
        self.token = self.ids.getrandbits(512).to_bytes(64, "big").hex()
        self.confirmed = False
        self._key, self.cert_pem = _signing_material(vendor_name)

    def _uuid(self) -> str:
        h = f"{self.ids.getrandbits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"

    def event_id(self, event: str) -> str:
        return self._uuid()

    @property
    def verification_key(self) -> str | None:
        return self.cert_pem.decode()

    def shared(self) -> dict[str, str]:
        from cryptography.hazmat.primitives import serialization

        key = self._key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())
        return {"key_pem": key.decode(), "cert_pem": self.cert_pem.decode(),
                "subscription_arn": self.subscription_arn, "token": self.token}

    def adopt(self, shared: dict[str, str]) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

        key = serialization.load_pem_private_key(shared["key_pem"].encode(), password=None)
        if not isinstance(key, RSAPrivateKey):
            raise ValueError(f"vendor {self.vendor_name!r}: the shared SNS signing key is not an RSA key")
        self._key, self.cert_pem = key, shared["cert_pem"].encode()
        self.subscription_arn, self.token = shared["subscription_arn"], shared["token"]

    def _sign(self, env: dict[str, str]) -> dict[str, str]:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        env["SignatureVersion"] = "2"
        env["Signature"] = b64(self._key.sign(string_to_sign(env), padding.PKCS1v15(), hashes.SHA256()))
        env["SigningCertURL"] = self.base_url() + CERT_PATH
        return env

    def _headers(self, env: dict[str, str]) -> dict[str, str]:
        h = {"x-amz-sns-message-type": env["Type"], "x-amz-sns-message-id": env["MessageId"],
             "x-amz-sns-topic-arn": self.topic_arn, "User-Agent": "Amazon Simple Notification Service Agent"}
        if env["Type"] == "Notification":
            h["x-amz-sns-subscription-arn"] = self.subscription_arn
        return h

    def preamble(self) -> list[tuple[str, bytes, dict[str, str]]]:
        env = {"Type": "SubscriptionConfirmation", "MessageId": self._uuid(), "Token": self.token,
               "TopicArn": self.topic_arn,
               "Message": f"You have chosen to subscribe to the topic {self.topic_arn}.\nTo confirm the "
                          "subscription, visit the SubscribeURL included in this message.",
               "SubscribeURL": f"{self.base_url()}{CONFIRM_PATH}?Action=ConfirmSubscription&TopicArn="
                               f"{self.topic_arn}&Token={self.token}",
               "Timestamp": iso(now_epoch())}
        env = self._sign(env)
        return [("SubscriptionConfirmation", jbytes(env), self._headers(env))]

    def ses_event(self, n: Notice) -> dict[str, object]:
        accepted = iso(n.extra["accepted_wall"])
        at = iso(n.occurred)
        mail = {"timestamp": accepted, "source": n.sender or "", "sendingAccountId": ACCOUNT,
                "sourceArn": f"arn:aws:ses:{REGION}:{ACCOUNT}:identity/{(n.sender or '@').rpartition('@')[2]}",
                "messageId": n.message_id, "destination": [n.rcpt], "headersTruncated": False, "headers": [],
                "commonHeaders": {"from": [n.sender or ""], "to": [n.rcpt], "messageId": n.message_id},
                "tags": {"ses:configuration-set": [f"maildrill-{self.vendor_name}"]}}
        ev: dict[str, object] = {"eventType": EVENT[n.event], "mail": mail}
        if n.event == "processed":
            ev["send"] = {}
        elif n.event == "delivered":
            ev["delivery"] = {"timestamp": at, "processingTimeMillis": max(0, int(1000 * (n.occurred -
                              n.extra["accepted_wall"]))), "recipients": [n.rcpt],
                              "smtpResponse": "250 2.0.0 OK", "reportingMTA": "a8-70.smtp-out.amazonses.com"}
        elif n.event == "bounce":
            hard = n.bounce_type == "permanent"
            ev["bounce"] = {"bounceType": "Permanent" if hard else "Transient",
                            "bounceSubType": "General" if hard else "MailboxFull",
                            "bouncedRecipients": [{"emailAddress": n.rcpt, "action": "failed",
                                                   "status": "5.1.1" if hard else "4.2.2",
                                                   "diagnosticCode": "smtp; 550 5.1.1 user unknown" if hard
                                                   else "smtp; 452 4.2.2 mailbox full"}],
                            "timestamp": at, "feedbackId": f"{n.event_id}-000000",
                            "reportingMTA": "dsn; a8-70.smtp-out.amazonses.com"}
        elif n.event == "deferred":
            ev["deliveryDelay"] = {"timestamp": at, "delayType": "TransientCommunicationFailure",
                                   "expirationTime": iso(n.occurred + 86400),
                                   "delayedRecipients": [{"emailAddress": n.rcpt, "status": "4.4.1",
                                                          "diagnosticCode": "smtp; 421 4.4.1 Unable to connect"}]}
        elif n.event == "dropped":
            ev["reject"] = {"reason": "Bad content"}
        return ev

    def render(self, n: Notice, attempt: int) -> tuple[bytes, dict[str, str]]:
        env = {"Type": "Notification", "MessageId": n.event_id, "TopicArn": self.topic_arn,
               "Message": json.dumps(self.ses_event(n), separators=(",", ":")),
               "Timestamp": iso(n.extra["sns_published_wall"])}
        env = self._sign(env)
        env["UnsubscribeURL"] = (f"{self.base_url()}{UNSUBSCRIBE_PATH}?Action=Unsubscribe&SubscriptionArn="
                                 f"{self.subscription_arn}")
        return jbytes(env), self._headers(env)


_MATERIAL: dict[str, tuple[RSAPrivateKey, bytes]] = {}


def _signing_material(name: str) -> tuple[RSAPrivateKey, bytes]:
    """An RSA key and a self-signed certificate (per vendor name, once per process: RSA keys are slow to make)."""
    if name not in _MATERIAL:
        import datetime

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"sns.{REGION}.amazonaws.com (maildrill {name})")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=365)).sign(key, hashes.SHA256()))
        _MATERIAL[name] = (key, cert.public_bytes(serialization.Encoding.PEM))
    return _MATERIAL[name]

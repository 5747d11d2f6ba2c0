"""Delivery webhooks of the fake vendors: one module per vendor format, one dispatcher that sends them."""

from maildrill.fake_mta.vendors.webhooks.dispatcher import WebhookDispatcher
from maildrill.fake_mta.vendors.webhooks.format import Format, Notice

__all__ = ["Format", "Notice", "WebhookDispatcher"]

"""Fake HTTP email-API vendors (SendGrid, Amazon SES, Postmark, Mailgun, Resend) on aiohttp's server.

`FakeVendor` serves one vendor's wire; the behaviours are the fake MTAs' (accept, throttle, reject, tempfail,
go_dark, tarpit) answered in the vendor's own words, and the events are the MTAs' kinds (source ``mta/<name>``).
"""

from maildrill.fake_mta.vendors import mailgun, postmark, resend, sendgrid, ses  # noqa: F401  (they register)
from maildrill.fake_mta.vendors.base import FakeVendor, Wire

__all__ = ["FakeVendor", "Wire"]

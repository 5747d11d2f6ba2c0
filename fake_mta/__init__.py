"""Scripted fake MTAs: real SMTP over TCP on aiosmtpd, with behaviours that decide each reply.

Never imports `harness`: the fleet runs standalone (``maildrill mta``) or in a container.
"""

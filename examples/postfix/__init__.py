"""Postfix as a real system under test: a private instance relaying to maildrill's fake MTA."""

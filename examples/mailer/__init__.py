"""The reference mailer: an HTTP service with a durable queue and SMTP workers whose retry policies are flags."""

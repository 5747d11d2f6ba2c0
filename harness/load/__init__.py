"""Load generation: shapes (pure functions of t_s), the Locust plan/dispatcher, and the Locust subprocesses.

`maildrill.harness.load.locustfile` is the only module that imports locust; it runs in the Locust subprocess only.
"""

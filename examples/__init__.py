"""Reference systems under test for maildrill drills (stand-ins for a user's app; no maildrill imports)."""

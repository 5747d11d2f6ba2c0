"""Docker compose files for running a drill against a real Toxiproxy and fleet (`maildrill run --compose`)."""

"""The local cloud: Google's emulators, fake-gcs-server, functions-framework and a local Cloud Run
Admin API, wired by the same topology file terraform reads."""

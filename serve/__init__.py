"""The swipe-fl sidecar: a FastAPI app a keyboard on the device talks to (docs/sidecar.md)."""

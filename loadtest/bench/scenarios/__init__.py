"""The bench scenarios; each `measure` returns a JSON-ready dict and never raises for a lossy run (it reports it)."""

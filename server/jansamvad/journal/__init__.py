"""The journal: a town hall's whole transcript (final speech, announcements, status changes), kept beyond the
broker's history window, for the "what you missed" digest and the record (docs/architecture.md, "The journal")."""

"""Brokers carry publications between nodes and keep each channel's recent history (for resume)."""

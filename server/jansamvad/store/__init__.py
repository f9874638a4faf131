"""Stores keep the durable state of town halls: metadata, questions, decisions, votes and reaction totals."""

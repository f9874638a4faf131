"""Automatic moderation: normalisation against evasion, blocked-word and pattern filters, near-duplicate grouping.

Everything here is pure (no I/O besides reading the data files once): the node asks it for a verdict on each new
question before a human moderator sees it.
"""

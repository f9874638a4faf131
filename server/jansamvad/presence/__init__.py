"""Presence: how many listeners each town hall has, summed over every node."""

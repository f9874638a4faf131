"""JanSamvad: live two-way town halls for a million citizens."""

__version__ = "0.1.0"

"""The in-process token bucket (jansamvad.token_bucket), on a clock the test moves by hand."""

from __future__ import annotations

import pytest

from jansamvad.token_bucket import TokenBucket


def test_token_bucket_allows_a_burst_then_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate=2, burst=3, now=10.0)
    assert [bucket.take(10.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(10.0) == pytest.approx(0.5)  # nothing taken: one token comes after half a second
    assert bucket.take(10.5) == 0.0
    assert bucket.take(10.5) > 0


def test_token_bucket_keeps_at_most_its_burst() -> None:
    bucket = TokenBucket(rate=100, burst=2, now=0.0)
    assert bucket.take(3600.0) == 0.0 and bucket.take(3600.0) == 0.0  # an hour idle still gives only the burst
    assert bucket.take(3600.0) > 0

"""Rate limiters: token buckets keyed by user, IP or town hall, shared by every node when Redis is used."""

"""Products and the cache in front of them."""

"""Placing, reading and cancelling orders, with Idempotency-Keys."""

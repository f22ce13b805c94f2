"""Jobs: their names, the Redis keys workers write, the outbox and its relay to the queue, and
the dead jobs."""

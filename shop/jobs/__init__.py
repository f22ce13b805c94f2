"""Jobs: their names, the outbox and its relay to the queue, and the dead-job ledger."""

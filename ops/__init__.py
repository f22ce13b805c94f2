"""Operator views over the queue, the jobs, the outbox and the workers (`ordersctl`, `/metrics`).

Each module is named for what it shows (`queue`, `jobs`, `timeline`, `outbox`, `health`, `metrics`);
`queue_actions` is the one that changes anything.
"""

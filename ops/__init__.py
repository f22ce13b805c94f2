"""Operator views over the queue, the jobs, the outbox and the workers (`ordersctl`, `/metrics`)."""

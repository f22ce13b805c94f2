"""Webhooks: clients' endpoints, the events of their orders, and signed deliveries with retries."""

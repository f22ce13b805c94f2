"""Plumbing every process shares: settings, connections, logging, metrics, heap, batching."""

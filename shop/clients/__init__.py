"""API clients and their keys."""

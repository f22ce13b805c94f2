"""Throwaway local services (Postgres, Redis, an SMTP sink) for `make run` and the tests."""

"""The domain layer shared by the API, the worker and the admin CLI."""

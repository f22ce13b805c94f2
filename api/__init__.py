"""The HTTP ingress: turns requests into calls on the shared domain layer and back."""

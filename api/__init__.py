"""The HTTP ingress: turns requests into calls on the domain layer (`shop`) and back."""

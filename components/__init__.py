"""Reusable Pulumi components, one per module; each takes a typed args class and works on its own."""

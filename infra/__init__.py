"""The llm-serving Pulumi program: stack config schema, catalogs, wiring of the components, and the CLI."""

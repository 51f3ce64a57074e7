"""The `proposalflow` command (typer): the one place that knows every service, so `shared/` imports none."""

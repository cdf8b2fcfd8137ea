"""Step handlers used by the test templates (resolved by class path or registered by name)."""

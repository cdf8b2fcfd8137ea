"""Integrations with web frameworks (import the submodule you need, e.g. ``tasker_core.contrib.fastapi``)."""

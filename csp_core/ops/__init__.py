"""Ops tasks: operations a person does by hand at the provider and confirms (tasks.py)."""

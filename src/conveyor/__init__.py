"""Conveyor: a durable, distributed task scheduler for Python."""

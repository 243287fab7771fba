"""Code shared by tests; tasks.py holds handlers that executor tests import by path."""

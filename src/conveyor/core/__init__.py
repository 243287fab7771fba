"""The pure core: task model, states and transitions, readiness, ordering, retry policy.

Nothing in this package does I/O or reads a clock; time arrives as arguments.
"""

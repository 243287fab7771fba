"""`python -m conveyor.ledger check --ledger DIR --submits FILE --server URL`."""

from conveyor.ledger.cli import main

main(prog_name="python -m conveyor.ledger")

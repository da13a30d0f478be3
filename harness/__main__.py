"""`python -m harness` is `reprosr`."""

from harness.cli import main

main()

"""`python -m pimsync` runs the command-line interface."""

from pimsync.cli import main

main()

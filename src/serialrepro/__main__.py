"""``python -m serialrepro`` runs the command line."""

from serialrepro.cli import main

main()

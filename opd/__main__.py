"""``python -m opd``: the same as the ``opd`` command."""

from opd.cli.app import main

main()

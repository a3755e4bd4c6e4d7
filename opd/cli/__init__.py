"""The ``opd`` command line. Nothing in the library imports this package."""

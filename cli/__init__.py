"""The ``polyjobs`` command line (Typer), a thin skin over the library."""

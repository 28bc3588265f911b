"""Applications built on the library: the command line (and later the web service)."""

"""One module per `phototag` command; each has `register(commands)`."""

"""One module per `dnnexp` subcommand; each parses its arguments and calls into the library."""

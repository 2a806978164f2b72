"""The `seamline` command line (`pipelines.cli.app`): an edge over the library for data engineers,
ML leads and the schedule. Errors a user can cause print one line and exit 2."""

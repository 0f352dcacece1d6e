"""On top: the command line, the dry run, measuring the machine, progress bars."""

"""The command line: ``python -m meterlib predict`` and ``python -m meterlib export``."""

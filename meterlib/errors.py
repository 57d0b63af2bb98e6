"""The base of meterlib's own errors: one ``except MeterlibError`` catches every refusal.

Each subclass also keeps the built-in type it always had (ValueError, RuntimeError), so code
that caught those still works.
"""


class MeterlibError(Exception):
    """Something meterlib refuses to do; the message names the file or parameter and the problem."""

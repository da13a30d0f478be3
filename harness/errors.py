"""The typed user error: bad input that the CLI reports as ``error: <message>`` with exit status 2."""


class UserError(Exception):
    """Bad user input (arguments, files, stores, checkpoints): the message says what to do; exit 2."""

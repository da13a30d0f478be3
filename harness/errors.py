"""The one user-error type: bad input judged where it is read (arguments, files, checkpoints, datasets)."""


class UserError(ValueError):
    """Input the user can fix; the message says how. The CLI prints it and exits 2; anything else is a bug
    and keeps its traceback."""

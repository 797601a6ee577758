"""UserError, the one exception type for mistakes a user can make (bad flags, missing data, ...), and
RunWarning, for what the user should know that does not stop the run.

The command line turns a UserError into a single line on stderr; programming errors keep their traceback.
"""


class UserError(Exception):
    """A problem the user can fix; the message says what is wrong and how to fix it."""


class RunWarning(UserWarning):
    """Something the user should know that does not stop the run (skipped files, a damaged older
    checkpoint passed over); the command line prints it as one line."""

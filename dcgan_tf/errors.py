"""The one exception type for mistakes a user can make (bad flags, missing data, ...).

The command line turns it into a single line on stderr; programming errors keep their traceback.
"""


class UserError(Exception):
    """A problem the user can fix; the message says what is wrong and how to fix it."""

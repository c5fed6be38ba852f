"""The two kinds of failure a command reports, mapped to exit codes by the CLI."""


class BadInput(Exception):
    """The user's input is wrong (exit code 2). The message is the one line the user sees.

    When the problem is in a file, the message starts with ``FILE:LINE:``.
    """

    exit_code = 2


class WorkFailed(Exception):
    """The input was fine but the work could not be done (exit code 1)."""

    exit_code = 1

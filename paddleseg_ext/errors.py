"""The one exception type the CLIs turn into a single clear line and exit code 1."""


class UserInputError(Exception):
    """Bad input from the user: a file, key or value, what is wrong and how to fix it.

    The message is one line; the CLI prints it without a traceback.
    """

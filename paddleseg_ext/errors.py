"""The one exception type the CLIs turn into a single clear line and a non-zero exit code
(1, or the error's own), and the hint that names what a misspelled name was probably meant
to be."""

import difflib

# The exit code of a training run stopped by a loss that became NaN or Inf.
DIVERGED_EXIT_CODE = 3


class UserInputError(Exception):
    """Bad input from the user: a file, key or value, what is wrong and how to fix it.

    The message is one line; the CLI prints it without a traceback and exits with
    `exit_code`.
    """

    exit_code = 1


def closest(name, candidates):
    """' (did you mean X?)' for the nearest candidate, or ''."""
    match = difflib.get_close_matches(str(name), [str(c) for c in candidates], n=1, cutoff=0.5)
    return f' (did you mean {match[0]!r}?)' if match else ''

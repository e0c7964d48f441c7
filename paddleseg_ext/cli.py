"""What every command line of the project shares: its parser and how it reports a user
error (one `error:` line on stderr, exit code 1)."""

import argparse
import sys

from paddleseg_ext.errors import UserInputError, closest


class ArgumentParser(argparse.ArgumentParser):
    """argparse, except that an unknown flag is named first, with the closest known one
    (argparse alone reports a misspelled required flag as the required flag missing), and
    that a usage error is one `error:` line and exit code 1, like every other user error."""

    def error(self, message):
        print(f'error: {self.prog}: {message} (see {self.prog} --help)', file=sys.stderr)
        sys.exit(1)

    def parse_args(self, args=None, namespace=None):
        argv = sys.argv[1:] if args is None else list(args)
        known = [flag for flag in self._option_string_actions if flag.startswith('--')]
        for token in argv:
            if token == '--':
                break
            flag = token.split('=', 1)[0]
            if not flag.startswith('--') or flag in known:
                continue
            if self.allow_abbrev and sum(k.startswith(flag) for k in known) == 1:
                continue
            self.error(f'unknown flag {flag}{closest(flag, known)}')
        return super().parse_args(argv, namespace)


def run_cli(main):
    """Runs main(); a UserInputError becomes one line on stderr and its exit code (1, or
    errors.DIVERGED_EXIT_CODE for a loss that became NaN or Inf)."""
    try:
        main()
    except UserInputError as exc:
        print(f'error: {exc}', file=sys.stderr)
        sys.exit(exc.exit_code)

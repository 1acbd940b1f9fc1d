"""What every command line shares: one-line errors.

A command's refusal reaches its user as one line, ``error: <what is wrong and how to fix
it>``, and an exit status (2: a bad option or input; 1: the run itself failed, such as a
diverged training), never as a traceback. ``run_command`` turns the errors minivit raises
on purpose into that line; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


class RunFailed(RuntimeError):
    """A run that started and then failed (exit status 1, not 2)."""


class UsageError(ValueError):
    """A command line that its parser cannot read (an unknown option, a value of the wrong type)."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with its usage errors raised as UsageError, which ``run_command`` prints as one
    line (the full usage stays behind --help)."""

    def error(self, message: str):
        raise UsageError(f"{message} (see {self.prog} --help)")


def run_command(main: Callable[[list | None], int], argv=None) -> int:
    """``main(argv)``, with the errors of bad input reported as one ``error:`` line."""
    try:
        return main(argv)
    except RunFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except MemoryError:
        print("error: out of memory. Lower --batch-size (or --eval-batch-size), or choose a smaller model "
              "(--hidden-size, --num-hidden-layers, --image-size).", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted.", file=sys.stderr)
        return 130
    except (ValueError, RuntimeError, OSError, KeyError) as error:
        print(f"error: {describe(error)}", file=sys.stderr)
        return 2


def describe(error: BaseException) -> str:
    """An exception's message, with the file an OSError names."""
    if isinstance(error, KeyError) and error.args:
        return str(error.args[0])
    if isinstance(error, OSError) and error.filename is not None and str(error.filename) not in str(error):
        return f"{error.strerror or error}: {error.filename}"
    return str(error) or type(error).__name__

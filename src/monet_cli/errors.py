"""One base exception and a few subclasses; the CLI turns each into one line and an exit code."""


class MonetError(Exception):
    """Base of every error monet reports to a user. ``exit_code`` is what the CLI exits with."""

    exit_code = 1

    def __init__(self, message: str, *, path=None):
        self.path = str(path) if path is not None else None
        super().__init__(message)

    def __str__(self) -> str:
        msg = super().__str__()
        return f"{self.path}: {msg}" if self.path else msg


class UsageError(MonetError):
    """The command line itself is wrong (exit 2, like typer/click usage errors)."""

    exit_code = 2


class InputError(MonetError):
    """An input file is missing, unreadable, corrupt, too large or of an unsupported kind."""


class PlanError(MonetError):
    """A plan is not valid JSON, names unknown operations, or has bad values."""


class OutputError(MonetError):
    """An output cannot be written (exists, no space, permission)."""


def flag_names(names) -> list[str]:
    """Planner option names as a user types them, sorted: ``sample_temperature`` →
    ``--sample-temperature`` (for messages about options a backend does not take)."""
    return ["--" + str(n).replace("_", "-") for n in sorted(names)]

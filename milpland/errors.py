"""Errors a user can cause (the base of the package: every stage imports it, it imports nothing).

The CLI prints them as one line, never as a traceback."""


class MilplandError(Exception):
    """A problem with the user's input or request, explained in one line."""


class SpecError(MilplandError):
    """An instance spec field is missing, malformed or inconsistent."""

    def __init__(self, field: str, problem: str, *, source: str | None = None):
        self.field = field
        self.problem = problem
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{field}: {problem}")

    def in_file(self, source: str) -> "SpecError":
        return SpecError(self.field, self.problem, source=source)

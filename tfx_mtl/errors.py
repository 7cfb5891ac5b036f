"""The one error type for bad input.

Whatever a user gives us (a task spec, a label expression, data, a Trainer
option, a command-line option, a Beam argument, a run-time parameter, a row to
encode, a benchmark setting) is refused with an :class:`InputError` that names
what is wrong (``field``: an option, a spec field, a file, a parameter) and says
why (``message``). The command line maps every one of them to exit status 2;
any other exception is a bug or a failure of the machine and exits 1.
"""
from __future__ import annotations


class InputError(ValueError):
    """Bad input. ``field`` names it; ``message`` says what is wrong with it."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class InputProblems(InputError):
    """Several things wrong in one input (a spec, a config): ``problems`` lists
    (field, message) pairs, all reported at once. With one problem, it is the field;
    with several, ``where`` is and each problem is a line."""

    def __init__(self, where: str, problems: list[tuple[str, str]]):
        self.problems = list(problems)
        if len(self.problems) == 1:
            super().__init__(*self.problems[0])
        else:
            super().__init__(where, "".join(f"\n  {field}: {message}"
                                            for field, message in self.problems))

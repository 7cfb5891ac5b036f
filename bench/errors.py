"""The one error every benchmark raises for a bad setting, so the CLI handles them alike."""


class BenchError(ValueError):
    """A benchmark setting is invalid; ``field`` names it."""

    def __init__(self, field: str, message: str):
        self.field, self.message = field, message
        super().__init__(f"{field}: {message}")

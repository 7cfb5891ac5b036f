"""The one error every benchmark raises for a bad setting."""
from tfx_mtl.errors import InputError


class BenchError(InputError):
    """A benchmark setting is invalid; ``field`` names it."""

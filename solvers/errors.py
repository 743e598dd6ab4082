"""The one exception the solvers raise for bad input."""


class SolverInputError(ValueError):
    """An input the solvers cannot work with; the message names the offending field first."""

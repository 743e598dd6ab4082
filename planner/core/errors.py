"""Errors the CLI turns into exit codes: bad input -> 2, infeasible request -> 1."""


class PlannerInputError(ValueError):
    """Bad user input. The message is one line and names the file and/or field."""


class InfeasibleError(Exception):
    """No configuration meets the request. `binding` names the constraint, `hint` what would fix it."""

    def __init__(self, message: str, binding: str = "", hint: str = ""):
        super().__init__(message)
        self.binding = binding
        self.hint = hint

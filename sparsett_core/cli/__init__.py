"""Command-line tools of sparsett_core (sparsett-track, sparsett-eval, sparsett-train, sparsett-export)."""


def one_line(error: BaseException | str) -> str:
    """An error message on one line, for ``PROG: error: ...`` (some library messages span several)."""
    return " ".join(str(error).split()) or type(error).__name__

"""Command-line tools of sparsett_core (sparsett-track, sparsett-eval, sparsett-train, sparsett-export)."""

"""tune(): an Optuna study over config keys, trials as training runs, pruning, ledger, best promotion."""

"""Training: the mmengine recipe, engine pieces, hooks, fit(), checkpoints, distributed helpers, run I/O."""

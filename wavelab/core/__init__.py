"""The shared core: configuration, entry-point plumbing, checkpoints, the model registry, run dirs
and launchers. It knows no model by name: models register through ``wavelab.core.registry``."""

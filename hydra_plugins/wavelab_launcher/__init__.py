"""Hydra instantiates launchers only from the ``hydra_plugins`` namespace package, so
``wavelab.core.slurm.SlurmLauncher`` is named here (conf/hydra/launcher/slurm.yaml). Without the
[sweeps] extra (hydra-submitit-launcher) there is nothing to name."""

try:
    from wavelab.core.slurm import SlurmLauncher as _WavelabSlurmLauncher
except ImportError:
    pass
else:

    class SlurmLauncher(_WavelabSlurmLauncher):
        pass

"""The commands of ``edge-inspect``: each module's ``register(sub)`` adds its arguments to the
parser beside its handler (``cmd_…``), which imports the code that does the work when the command
runs, so that ``--help`` loads no model, camera or web code. The offline commands' work lives here
too: try (trial.py), tune, bench, doctor and the demo; where that work is heavy to import, its
arguments and handler are in a ``…_command.py`` module of their own."""

"""The ``breeboost`` subcommands, one module each: the composition root, where the packages are wired up.

Each module holds two functions, ``add_<name>_arguments(parser)`` and ``run_<name>(args, settings) -> int``
(:mod:`breeboost.cli` finds them through its ``COMMANDS`` table). They parse arguments, call the plain
functions of the domain packages (``simulator``, ``models``, ``detectors``, ``streams``, ``incident``) and
print; the domain packages never import them. Heavy libraries (xgboost, faust) are imported inside the
``run_*`` functions, so ``breeboost --help`` stays fast.

Modules: ``broker``, ``simulate``, ``train``, ``evaluate``, ``score``, ``report``, ``worker``, ``incidents``,
``rca``, ``audit``, ``demo``; ``options`` holds argument helpers several of them share.
"""

__all__: list[str] = []

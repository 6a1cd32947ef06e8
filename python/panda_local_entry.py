# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Entry point of the ``panda-local`` command, made to start fast.

The local service lives in ``lsst.ctrl.bps.panda.local``, below
``lsst.ctrl.bps``, whose ``__init__`` imports ctrl_bps and the butler (several
seconds). ``panda-local`` needs none of that, so before importing its command
line this module registers ``lsst.ctrl.bps`` as a package whose ``__init__``
runs on the first use of one of its attributes (``__path__`` and the other
attributes the import system sets are there already, so its submodules import
without it). Code that does use ``lsst.ctrl.bps`` (``from lsst.ctrl.bps import
BpsConfig``) gets the whole package, initialised then.

The console script points here rather than at
`lsst.ctrl.bps.panda.local.cli.main` because any module below
``lsst.ctrl.bps`` makes Python run ``lsst.ctrl.bps``'s ``__init__`` first.
"""

from __future__ import annotations

__all__ = ["ctrl_bps_panda_dir", "defer_package_init", "main"]

import importlib.util
import pkgutil
import sys
import types
from typing import Any

DEFERRED_PACKAGE = "lsst.ctrl.bps"
"""The package whose ``__init__`` runs only when one of its names is used."""


class _DeferredPackage(types.ModuleType):
    """A package whose ``__init__`` has not run yet."""

    def __getattr__(self, name: str) -> Any:
        # Called only for names not set yet: run the package's __init__ now.
        object.__setattr__(self, "__class__", types.ModuleType)
        spec = self.__spec__
        if spec is None or spec.loader is None:  # pragma: no cover - set by defer_package_init
            raise AttributeError(name)
        spec.loader.exec_module(self)
        return getattr(self, name)


def defer_package_init(name: str = DEFERRED_PACKAGE) -> bool:
    """Register a package so that its ``__init__`` runs on first use.

    Parameters
    ----------
    name : `str`, optional
        Dotted package name.

    Returns
    -------
    deferred : `bool`
        `False` if it was imported already or cannot be found.
    """
    if name in sys.modules:
        return False
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return False
    module = importlib.util.module_from_spec(spec)
    # What the package's __init__ would do first (lsst packages extend their
    # path), so that its parts installed elsewhere on sys.path are found.
    module.__path__ = pkgutil.extend_path(list(spec.submodule_search_locations), name)
    module.__class__ = _DeferredPackage
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)
    return True


def main() -> None:
    """Run ``panda-local``."""
    defer_package_init()
    from lsst.ctrl.bps.panda.local.cli import main as cli_main

    cli_main()


def ctrl_bps_panda_dir() -> None:
    """Run ``ctrl_bps_panda_dir`` (print the site configs' directory) just as
    fast: it too needs nothing of ctrl_bps.
    """
    defer_package_init()
    from lsst.ctrl.bps.panda.cli.install_dir import main as dir_main

    dir_main()


if __name__ == "__main__":
    main()

"""Import optional dependencies with an error that says how to install them."""

from __future__ import annotations

import importlib
from types import ModuleType

# module name -> (pip package, dataflow extra)
_PACKAGES = {
    "lmdb": ("lmdb", "lmdb"),
    "cv2": ("opencv-python-headless", "image"),
    "h5py": ("h5py", "hdf5"),
    "scipy.io": ("scipy", "mat"),
    "torch": ("torch", "torch"),
    "jax": ("jax", "jax"),
    "tensorflow": ("tensorflow", "tf"),
}


def import_optional(module: str, user: str) -> ModuleType:
    """Import *module* for *user* (the feature that needs it), or raise an
    ``ImportError`` that names the package and the install command.

    Example:
        >>> import_optional("no_such_module_xyz", "MyReader")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ImportError: MyReader needs the 'no_such_module_xyz' package: pip install no_such_module_xyz
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        package, extra = _PACKAGES.get(module, (module.split(".")[0], None))
        how = f"pip install 'dataflow-ml[{extra}]'" if extra else f"pip install {package}"
        raise ImportError(f"{user} needs the {package!r} package: {how}") from err

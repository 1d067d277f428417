"""The single home of the package version; setup.py reads it from here.

A PEP 440 version: ``X.Y.Z.devN`` between releases, ``X.Y.Z`` when released
(see CHANGELOG.md and docs/releases.md).
"""

__version__ = "0.2.0.dev0"

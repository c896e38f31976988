"""Every subpackage of seamless_fast (seamless_fast.io, ...) is one that an install contains."""

import fnmatch
import os

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_subpackage_is_installed():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as handle:
        setuptools = tomllib.load(handle)["tool"]["setuptools"]
    found = {os.path.relpath(folder, ROOT).replace(os.sep, ".")
             for folder, _, files in os.walk(os.path.join(ROOT, "seamless_fast")) if "__init__.py" in files}
    assert "seamless_fast.io" in found
    if "packages" in setuptools and isinstance(setuptools["packages"], list):
        missing = found - set(setuptools["packages"])
    else:
        include = setuptools["packages"]["find"]["include"]
        missing = {name for name in found if not any(fnmatch.fnmatchcase(name, pattern) for pattern in include)}
    assert not missing, sorted(missing)

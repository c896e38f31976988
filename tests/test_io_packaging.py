"""seamless_fast.io is a package: an installed seamless_fast must contain it."""

import os

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.xfail(strict=True, reason="pyproject.toml lists packages = ['seamless_fast'] only, so a wheel leaves "
                                       "seamless_fast/io/ out; the lead adds 'seamless_fast.io' (then drop this mark)")
def test_every_subpackage_is_installed():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as handle:
        setuptools = tomllib.load(handle)["tool"]["setuptools"]
    listed = set(setuptools.get("packages", []))
    found = {os.path.relpath(folder, ROOT).replace(os.sep, ".")
             for folder, _, files in os.walk(os.path.join(ROOT, "seamless_fast")) if "__init__.py" in files}
    assert "packages" not in setuptools or found <= listed, sorted(found - listed)

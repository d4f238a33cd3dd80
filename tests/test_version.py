"""The version: one value for the package and its metadata, and one that requirements
written for upstream pyinstrument 5.x accept."""

from importlib.metadata import version

from packaging.specifiers import SpecifierSet
from packaging.version import Version

import pyinstrument


def test_the_package_and_its_metadata_agree():
    assert pyinstrument.__version__ == version("pyinstrument")


def test_requirements_written_for_upstream_5_accept_it():
    ours = Version(pyinstrument.__version__)
    assert ours >= Version("5.1.3")  # upstream's latest 5.x when this was released
    assert not ours.is_prerelease and not ours.is_devrelease and ours.local is None
    for requirement in (">=5.1.3", "~=5.1", ">=5,<6"):
        assert ours in SpecifierSet(requirement), requirement

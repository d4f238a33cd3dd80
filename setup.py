"""Builds the C engine as pyinstrument._engine (all metadata lives in pyproject.toml)."""

import glob
import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py


class always_build_ext(build_ext):
    """Rebuilds every time: the tree's build/ is shared by the normal and sanitizer builds."""

    def finalize_options(self):
        super().finalize_options()
        self.force = True


class build_py_with_pth(build_py):
    """Installs src/pyinstrument-agent.pth at the top of site-packages: Python runs it at
    start-up, and it arms the agent only when PYINSTRUMENT_AGENT is set (docs/attach.md)."""

    def run(self):
        super().run()
        self.copy_file(
            os.path.join("src", "pyinstrument-agent.pth"), os.path.join(self.build_lib, "pyinstrument-agent.pth")
        )


if not sys.platform.startswith("linux"):
    sys.exit("pyinstrument (C engine) currently supports Linux only.")

extra_compile_args = ["-std=c11", "-Wall", "-Wextra", "-O2", "-fvisibility=hidden"]
extra_link_args = []
if os.environ.get("PYINSTRUMENT_WERROR"):
    # `make test` and CI: a warning fails the build; a user's install never fails on
    # a warning that a newer compiler adds
    extra_compile_args.append("-Werror")
if os.environ.get("PYINSTRUMENT_SANITIZE"):
    # ASan/UBSan build used by `make test-sanitize`
    flags = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined"]
    extra_compile_args += flags + ["-O1", "-g", "-UNDEBUG"]  # keep CPython's and our asserts
    extra_link_args += flags

setup(
    cmdclass={"build_ext": always_build_ext, "build_py": build_py_with_pth},
    ext_modules=[
        Extension(
            "pyinstrument._engine",
            sources=sorted(glob.glob("engine/*.c")),
            depends=glob.glob("engine/*.h"),
            include_dirs=["engine"],
            libraries=["rt"],  # timer_create (sigterm.c): in librt before glibc 2.34
            extra_compile_args=extra_compile_args,
            extra_link_args=extra_link_args,
        )
    ],
)

"""Build script: maps the source folders onto the ``hostprof`` namespace and builds the native core.

The folders are named for their role (``agent/``, ``native/``, ``collectors/``), but nothing is
ever installed under those bare names: ``package_dir`` maps them into ``hostprof``.

Every ``native/*.pyx`` becomes one extension ``hostprof.native.<stem>``. Extra C sources are
declared inside the ``.pyx`` itself with a ``# distutils: sources = native/x.c`` directive, so
adding a C file never needs an edit here.

``HOSTPROF_DEBUG_BUILD=1`` turns on Cython's bounds and wraparound checks, keeps C asserts
(undefines NDEBUG) and builds with ``-O0 -g``: CI runs the native tests against it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension
from setuptools import find_packages
from setuptools import setup

HERE = Path(__file__).parent
DEBUG_BUILD = os.environ.get("HOSTPROF_DEBUG_BUILD", "") not in ("", "0")

PACKAGE_DIR = {
    "hostprof": "agent",
    "hostprof.native": "native",
    "hostprof.collectors": "collectors",
}


def _packages() -> list[str]:
    packages = ["hostprof", "hostprof.native", "hostprof.collectors"]
    packages += [f"hostprof.{name}" for name in find_packages(where="agent")]
    return packages


def _extensions() -> list[Extension]:
    compile_args = ["-std=c11", "-Wall", "-Wno-unused-function"]
    macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION"), ("_GNU_SOURCE", "1")]
    if DEBUG_BUILD:
        compile_args += ["-O0", "-g", "-UNDEBUG"]
    else:
        compile_args += ["-O2"]
    extensions = []
    for pyx in sorted((HERE / "native").glob("*.pyx")):
        extensions.append(
            Extension(
                f"hostprof.native.{pyx.stem}",
                sources=[f"native/{pyx.name}"],
                include_dirs=["native", numpy.get_include()],
                define_macros=macros,
                extra_compile_args=compile_args,
            )
        )
    directives = {
        "language_level": "3",
        "boundscheck": DEBUG_BUILD,
        "wraparound": DEBUG_BUILD,
        "initializedcheck": DEBUG_BUILD,
        "cdivision": True,
        "embedsignature": True,
    }
    return cythonize(
        extensions, compiler_directives=directives, include_path=["native"], quiet=True
    )


setup(
    package_dir=PACKAGE_DIR,
    packages=_packages(),
    package_data={
        "hostprof": ["proto/*.proto", "store/ui/*", "encoders/assets/*"],
        "hostprof.native": ["*.pyi", "*.pxd", "*.h"],
        "hostprof.collectors": ["*.bpf.c", "*.h"],
    },
    ext_modules=_extensions(),
    zip_safe=False,
)

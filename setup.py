"""Build of the native core; all other metadata lives in pyproject.toml.

SALIENT_PIPES_SANITIZE=1 builds it with AddressSanitizer and
UndefinedBehaviorSanitizer (see scripts/sanitize.sh).
"""

import os

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import setup

WARNINGS = ["-Wall", "-Wextra"]

if os.environ.get("SALIENT_PIPES_SANITIZE"):
    sanitize = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"]
    compile_args = ["-O1", "-g", "-fno-omit-frame-pointer", *sanitize]
    link_args = sanitize
else:
    compile_args = ["-O3"]
    link_args = []

native = Pybind11Extension(
    "salient_pipes._native._core",
    ["salient_pipes/_native/bindings.cpp"],
    cxx_std=17,
    extra_compile_args=WARNINGS + compile_args,
    extra_link_args=["-pthread", *link_args],
)

setup(ext_modules=[native], cmdclass={"build_ext": build_ext})

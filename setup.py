"""Build of the native core; all other metadata lives in pyproject.toml.

SALIENT_PIPES_SANITIZE=1 builds it with AddressSanitizer and
UndefinedBehaviorSanitizer, SALIENT_PIPES_SANITIZE=thread with
ThreadSanitizer (see scripts/sanitize.sh).
"""

import os
from glob import glob

from pybind11.setup_helpers import ParallelCompile, Pybind11Extension, build_ext
from setuptools import setup

# The two units compile in parallel (SALIENT_PIPES_BUILD_JOBS, default: every core).
ParallelCompile("SALIENT_PIPES_BUILD_JOBS").install()

WARNINGS = ["-Wall", "-Wextra"]

SANITIZE = os.environ.get("SALIENT_PIPES_SANITIZE")
if SANITIZE:
    sanitize = (["-fsanitize=thread"] if SANITIZE == "thread" else
                ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"])
    # -O0: a third of -O1's compile time (the build outweighs the run), and
    # reports that name every frame
    compile_args = ["-O0", "-g", "-fno-omit-frame-pointer", *sanitize]
    link_args = sanitize
else:
    compile_args = ["-O3"]
    link_args = []

native = Pybind11Extension(
    "salient_pipes._native._core",
    # two units that include the bind_*.cpp files (see unit_bindings.cpp)
    ["salient_pipes/_native/unit_bindings.cpp", "salient_pipes/_native/unit_sampling.cpp"],
    # a change to any header or included file rebuilds
    depends=sorted(glob("salient_pipes/_native/*.hpp") + glob("salient_pipes/_native/bind*.cpp")),
    cxx_std=17,
    extra_compile_args=WARNINGS + compile_args,
    extra_link_args=["-pthread", *link_args],
)

setup(ext_modules=[native], cmdclass={"build_ext": build_ext})

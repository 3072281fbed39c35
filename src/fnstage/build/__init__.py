"""Build a function's files into a Bundle: validate, resolve imports, compile, hash. Pure: no I/O."""

from fnstage.build.builder import build
from fnstage.build.bundle import MAGIC, Bundle, CompiledModule, load_modules
from fnstage.build.files import BuildLimits

__all__ = ["MAGIC", "BuildLimits", "Bundle", "CompiledModule", "build", "load_modules"]

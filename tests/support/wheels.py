"""Small wheels built in a test (see `fnstage.testing.wheelhouse`)."""

from fnstage.testing import offline_env, wheelhouse, write_sdist, write_wheel

__all__ = ["offline_env", "wheelhouse", "write_sdist", "write_wheel"]

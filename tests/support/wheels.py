"""Small wheels built in a test (see `fnstage.testing.wheelhouse`)."""

from fnstage.testing import offline_env, wheelhouse, write_sdist, write_wheel

__all__ = ["USES_FNPKG", "offline_env", "wheelhouse", "write_sdist", "write_wheel"]

# a function that answers the version of the wheelhouse's fnpkg it imported (% who: which function)
USES_FNPKG = "import fnpkg\n\n\ndef main(ctx):\n    return {'version': fnpkg.__version__, 'who': %r}\n"

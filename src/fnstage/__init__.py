"""fnstage: serverless Python functions with instant, recorded, reversible releases.

Function code imports `Response` and `HTTPError` from here. They are looked up in `fnstage.sdk` on
first use, so the `fnstage` command, which imports this package, does not pay for the SDK's imports
(dataclasses, datetime, json: about 15 ms) to print its help (issue 17); the runtime imports the SDK
before any function's code runs.
"""

TYPE_CHECKING = False  # not `typing`'s: importing typing costs the help path a few ms
if TYPE_CHECKING:
    from fnstage.sdk import Context, HTTPError, Response, TriggerInfo

__version__ = "0.1.0"
__all__ = ["Context", "HTTPError", "Response", "TriggerInfo", "__version__"]


def __getattr__(name: str) -> object:
    if name in __all__:
        from fnstage import sdk

        return getattr(sdk, name)
    raise AttributeError(f"module 'fnstage' has no attribute {name!r}")

"""fnstage: serverless Python functions with instant, recorded, reversible releases.

Function code imports `Response` and `HTTPError` from here.
"""

from fnstage.sdk import Context, HTTPError, Response, TriggerInfo

__version__ = "0.1.0"
__all__ = ["Context", "HTTPError", "Response", "TriggerInfo", "__version__"]

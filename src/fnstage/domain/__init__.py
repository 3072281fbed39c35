"""Plain data and rules with no I/O: names, environments, semver and the release policy, errors."""

from fnstage.domain.errors import (
    BuildFailed,
    Conflict,
    FnstageError,
    Forbidden,
    InvalidInput,
    NotFound,
    PolicyViolation,
    StaleVersion,
    TooLarge,
    Unauthorized,
)
from fnstage.domain.names import ENVIRONMENTS, FunctionName, check_base, check_environment, check_gateway_id

__all__ = [
    "ENVIRONMENTS",
    "BuildFailed",
    "Conflict",
    "FnstageError",
    "Forbidden",
    "FunctionName",
    "InvalidInput",
    "NotFound",
    "PolicyViolation",
    "StaleVersion",
    "TooLarge",
    "Unauthorized",
    "check_base",
    "check_environment",
    "check_gateway_id",
]

"""The release policy: code moves forward dev -> staging -> prod, and what a release must carry.

These are the rules the seed's console showed (prod disabled when releasing from dev) made explicit and
enforced on the server, so the CLI, the API and the console cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

from fnstage.domain.errors import FnstageError, InvalidInput, PolicyViolation
from fnstage.domain.names import ENVIRONMENTS
from fnstage.domain.versions import is_greater, parse_semver, suggest_semver

MAX_NOTE_LENGTH = 2000
SAVE_ENVIRONMENTS = ("dev",)


def rank(env: str) -> int:
    return ENVIRONMENTS.index(env)


def promotion_refusal(source_env: str, target_env: str, allow_skip: bool) -> str | None:
    """Why promoting from `source_env` to `target_env` is refused, or None when it is allowed."""
    if rank(target_env) <= rank(source_env):
        return f"promotion goes forward only (dev -> staging -> prod): {source_env} -> {target_env} is not"
    if rank(target_env) - rank(source_env) > 1 and not allow_skip:
        return (
            f"{source_env} -> {target_env} skips staging: promote to staging first, or let the gateway "
            "allow dev -> prod (gateway setting allow_dev_to_prod)"
        )
    return None


def check_release_target(source_env: str, target_env: str, allow_skip: bool) -> bool:
    """Validate a release's direction; return True when it is a rollback (same environment)."""
    if source_env == target_env:
        return True
    refusal = promotion_refusal(source_env, target_env, allow_skip)
    if refusal:
        raise PolicyViolation(refusal, field="target")
    return False


def check_note(note: str | None, required: bool, field: str = "note") -> str | None:
    if note is not None and not isinstance(note, str):
        raise InvalidInput("note must be text", field=field)
    note = (note or "").strip() or None
    if required and note is None:
        raise InvalidInput(
            "a release note is required for staging and prod releases and for every rollback",
            field=field,
        )
    if note is not None and any(ord(c) < 32 and c not in "\n\t" for c in note):
        raise InvalidInput(
            "note contains control characters: only printable text, newlines and tabs", field=field
        )
    if note is not None and len(note) > MAX_NOTE_LENGTH:
        raise InvalidInput(
            f"note is {len(note)} characters long: at most {MAX_NOTE_LENGTH} are allowed", field=field
        )
    return note


def needs_note_and_greater_semver(target_env: str, is_rollback: bool) -> bool:
    return target_env in ("staging", "prod") or is_rollback


def check_release_semver(
    semver_text: str | None, target_env: str, current: str | None, required: bool
) -> str | None:
    """Check the semver a release assigns: when required, present and greater than the target's current."""
    if semver_text is None:
        if required:
            hint = f" (currently {current})" if current else ""
            raise InvalidInput(
                f"a semver is required for a release to {target_env}{hint}: it must be greater than "
                "the target's current one",
                field="semver",
            )
        return None
    parse_semver(semver_text)
    if required and current is not None and not is_greater(semver_text, current):
        raise PolicyViolation(
            f"semver {semver_text} is not greater than {target_env}'s current {current}: a release "
            "always moves the version forward, even when it brings old code back",
            field="semver",
        )
    return semver_text


def check_save_environment(env: str) -> None:
    if env not in SAVE_ENVIRONMENTS:
        raise PolicyViolation(
            f"{env} receives code only through promote or release; save (push) to dev, then promote",
            field="name",
        )


@dataclass(frozen=True)
class TargetOption:
    """Whether code may be released into one environment, and what such a release needs."""

    env: str
    refusal: str | None  # why it may not; None when it may
    is_rollback: bool  # the code comes from this environment's own history
    current_semver: str | None
    suggested_semver: str | None  # None when refused
    needs_note_and_greater_semver: bool
    semver_problem: str | None  # what is wrong with the semver asked about; None when fine or not asked


def release_options(
    source_env: str,
    source_semver: str | None,
    from_history: bool,
    current_semvers: dict[str, str | None],
    allow_skip: bool,
    semver: str | None = None,
) -> list[TargetOption]:
    """Every environment as a release target of code from `source_env` (its current version, or a
    history entry when `from_history`): THE answer the CLI and the console show, so the rules above
    are applied in one place. `semver`, when given, is checked against each allowed target."""
    options = []
    for env in ENVIRONMENTS:
        current = current_semvers.get(env)
        if env == source_env:
            refusal = (
                None
                if from_history
                else f"{env} already runs this: release a history entry of it to roll back"
            )
        else:
            refusal = promotion_refusal(source_env, env, allow_skip)
        strict = needs_note_and_greater_semver(env, env == source_env)
        problem = None
        if refusal is None and semver is not None:
            try:
                check_release_semver(semver, env, current, required=strict)
            except FnstageError as error:
                problem = error.message
        options.append(
            TargetOption(
                env=env,
                refusal=refusal,
                is_rollback=env == source_env and refusal is None,
                current_semver=current,
                suggested_semver=None if refusal else suggest_semver(source_semver, env, current),
                needs_note_and_greater_semver=strict,
                semver_problem=problem,
            )
        )
    return options

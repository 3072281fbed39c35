from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fnstage.domain.dependencies import check_requirements, import_names
from fnstage.domain.errors import FnstageError, InvalidInput, PolicyViolation
from fnstage.domain.names import FunctionName, check_base, check_gateway_id
from fnstage.domain.policy import (
    check_note,
    check_release_semver,
    check_release_target,
    promotion_refusal,
    release_options,
)
from fnstage.domain.versions import is_greater, parse_semver, suggest_semver


def test_function_name_parses_env_and_base() -> None:
    name = FunctionName.parse("prod/user/me")
    assert (name.env, name.base, str(name)) == ("prod", "user/me", "prod/user/me")


@pytest.mark.parametrize(
    "text",
    [
        "user/me",
        "qa/user/me",
        "dev/",
        "dev/User/me",
        "dev/user//me",
        "dev/../me",
        "dev/-x",
        "dev/a b",
        "dev/" + "/".join(["a"] * 9),
        "dev/" + "a" * 201,
    ],
)
def test_bad_function_names_are_refused_with_the_field(text: str) -> None:
    with pytest.raises(InvalidInput) as err:
        FunctionName.parse(text)
    assert err.value.field == "name"


def test_eight_segments_and_200_chars_are_allowed() -> None:
    check_base("/".join(["a"] * 8))
    check_base("a" * 200)


@pytest.mark.parametrize("gateway", ["", "-a", "a-", "A", "a_b", "a" * 41, "a.b"])
def test_bad_gateway_ids(gateway: str) -> None:
    with pytest.raises(InvalidInput):
        check_gateway_id(gateway)


def test_semver_ordering_includes_prereleases() -> None:
    assert is_greater("1.0.0", "1.0.0-rc.1")
    assert is_greater("1.0.0-rc.2", "1.0.0-rc.1")
    assert not is_greater("1.0.0", "1.0.0")
    with pytest.raises(InvalidInput) as err:
        parse_semver("1.0")
    assert "MAJOR.MINOR.PATCH" in err.value.message


@pytest.mark.parametrize(
    ("source", "target", "current", "suggested"),
    [
        # what the console's release sheet suggested before the rule moved to the server
        ("0.1.3", "staging", None, "1.0.0-rc.1"),
        ("1.2.0", "staging", None, "1.2.0-rc.1"),
        ("0.1.3", "staging", "1.0.0-rc.1", "1.0.0-rc.2"),
        ("0.1.3", "staging", "1.0.0", "1.0.1-rc.1"),
        ("1.0.0-rc.2", "prod", None, "1.0.0"),
        ("1.0.0-rc.2", "prod", "1.0.0", "1.0.1"),
        ("1.0.1-rc.1", "prod", "1.0.0", "1.0.1"),
        ("0.1.3", "prod", None, "1.0.0"),
        ("0.1.3", "dev", None, "0.1.4"),
        (None, "dev", None, "0.1.0"),
        ("1.0.0", "dev", "0.1.3", "0.1.4"),
        ("1.0.0", "dev", "0.2.0-rc", "0.2.0-rc.1"),
        ("not a semver", "prod", "also not", "1.0.0"),
    ],
)
def test_suggested_semver_is_greater_than_the_target_s(
    source: str | None, target: str, current: str | None, suggested: str
) -> None:
    assert suggest_semver(source, target, current) == suggested
    if current is not None and current != "also not":
        assert is_greater(suggested, current)


def test_release_options_say_why_each_refused_target_is_refused() -> None:
    currents = {"dev": "0.1.3", "staging": "1.0.0-rc.1", "prod": None}
    options = {o.env: o for o in release_options("dev", "0.1.3", False, currents, allow_skip=False)}
    assert options["dev"].refusal == "dev already runs this: release a history entry of it to roll back"
    assert options["staging"].refusal is None and options["staging"].suggested_semver == "1.0.0-rc.2"
    assert "skips staging" in (options["prod"].refusal or "") and options["prod"].suggested_semver is None
    allowed = release_options("dev", "0.1.3", False, currents, allow_skip=True)
    assert [o.env for o in allowed if o.refusal is None] == ["staging", "prod"]
    back = {o.env: o for o in release_options("staging", "1.0.0-rc.1", True, currents, allow_skip=False)}
    assert back["staging"].is_rollback and back["staging"].suggested_semver == "1.0.0-rc.2"
    assert "forward only" in (back["dev"].refusal or "")


def test_release_options_check_a_semver_against_each_target() -> None:
    currents = {"dev": "0.1.3", "staging": "1.0.0-rc.5", "prod": None}
    options = {o.env: o for o in release_options("dev", "0.1.3", False, currents, False, semver="1.0.0-rc.2")}
    assert "not greater than staging's current 1.0.0-rc.5" in (options["staging"].semver_problem or "")
    assert options["prod"].semver_problem is None  # refused anyway: nothing to check
    fine = release_options("dev", "0.1.3", False, currents, False, semver="1.0.0-rc.6")
    assert [o.semver_problem for o in fine] == [None, None, None]
    bad = {o.env: o for o in release_options("dev", "0.1.3", False, currents, False, semver="1.0")}
    assert "MAJOR.MINOR.PATCH" in (bad["staging"].semver_problem or "")


def test_promotion_is_forward_and_sequential_unless_allowed() -> None:
    assert promotion_refusal("dev", "staging", False) is None
    assert promotion_refusal("staging", "prod", False) is None
    assert "skips staging" in (promotion_refusal("dev", "prod", False) or "")
    assert promotion_refusal("dev", "prod", True) is None
    assert "forward only" in (promotion_refusal("prod", "staging", True) or "")
    assert check_release_target("prod", "prod", False) is True
    with pytest.raises(PolicyViolation):
        check_release_target("staging", "dev", True)


def test_release_semver_must_increase_when_required() -> None:
    assert check_release_semver("1.0.1", "prod", "1.0.0", required=True) == "1.0.1"
    with pytest.raises(PolicyViolation) as err:
        check_release_semver("1.0.0", "prod", "1.0.0", required=True)
    assert err.value.field == "semver"
    with pytest.raises(InvalidInput) as missing:
        check_release_semver(None, "prod", "1.0.0", required=True)
    assert "currently 1.0.0" in missing.value.message
    assert check_release_semver(None, "dev", "0.1.0", required=False) is None


def test_note_required_and_bounded() -> None:
    with pytest.raises(InvalidInput):
        check_note("   ", required=True)
    assert check_note("  fix  ", required=True) == "fix"
    with pytest.raises(InvalidInput):
        check_note("x" * 2001, required=False)


def test_requirements_are_canonical_and_ranges_are_allowed() -> None:
    assert check_requirements(["Requests==2.32.3", "pyyaml==6.0.1"]) == ["pyyaml==6.0.1", "requests==2.32.3"]
    # uv resolves ranges into a lock of exact versions, which each deployment records
    assert check_requirements(["requests", "Pydantic>=2,<3"]) == ["pydantic<3,>=2", "requests"]
    for bad in ["requests==", "==1", "-e .", "x @ https://example.com/x.whl", "a b"]:
        with pytest.raises(InvalidInput):
            check_requirements([bad])
    with pytest.raises(InvalidInput):
        check_requirements(["a==1", "A==2"])
    assert {"yaml", "pyyaml", "requests"} <= import_names(["PyYAML==6.0.1", "requests==2.32.3"])


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_no_text_makes_name_parsing_raise_anything_but_fnstage_errors(text: str) -> None:
    with contextlib.suppress(FnstageError):
        FunctionName.parse(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80), st.text(max_size=80))
def test_no_text_makes_semver_rules_raise_anything_but_fnstage_errors(a: str, b: str) -> None:
    with contextlib.suppress(FnstageError):
        check_release_semver(a, "prod", b, required=True)


@settings(max_examples=100, deadline=None)
@given(
    st.tuples(st.integers(0, 50), st.integers(0, 50), st.integers(0, 50)),
    st.tuples(st.integers(0, 50), st.integers(0, 50), st.integers(0, 50)),
)
def test_semver_order_matches_tuple_order(a: tuple[int, int, int], b: tuple[int, int, int]) -> None:
    assert is_greater(".".join(map(str, a)), ".".join(map(str, b))) == (a > b)


def test_notes_refuse_control_characters() -> None:
    with pytest.raises(InvalidInput, match="control characters"):
        check_note("fixed\x00it", required=True)
    assert check_note("line one\nline two\tindented", required=True) == "line one\nline two\tindented"


@pytest.mark.parametrize(
    "text",
    ["99999999999999999999999.0.0", "1.1000000000.0", "1.0.1000000000", "1.0.0-rc.1000000000"],
)
def test_a_semver_part_beyond_the_limit_is_refused_with_the_limit(text: str) -> None:
    # past it, every later release would need a still bigger number: one typo would end releasing
    with pytest.raises(InvalidInput, match="at most 999999999") as err:
        parse_semver(text)
    assert err.value.field == "semver"


def test_the_largest_semver_parts_are_allowed() -> None:
    assert str(parse_semver("999999999.999999999.999999999-rc.999999999")) == (
        "999999999.999999999.999999999-rc.999999999"
    )


def test_a_current_semver_stored_before_the_limit_is_still_ordered() -> None:
    with pytest.raises(PolicyViolation, match="not greater"):
        check_release_semver("2.0.0", "prod", "99999999999999999999999.0.0", required=True)

"""How ./scripts/test groups tests on pytest-xdist's workers (tests/support/scheduling.py): the tests
that share a module- or class-scoped fixture, and only those, go to one worker together."""

from __future__ import annotations

from pathlib import Path

from support.scheduling import grouped_tests

MODULE = """
import pytest

@pytest.fixture(scope="module")
def server():
    yield 1

@pytest.fixture
def client(server):
    return server

@pytest.fixture
def plain(tmp_path):
    return tmp_path

def test_uses_the_server(server): ...
def test_uses_it_through_a_fixture(client, plain): ...
def test_alone(plain): ...

class TestInAClass:
    def test_method(self, server): ...
"""


def test_tests_using_a_shared_fixture_directly_or_through_another_are_grouped(tmp_path: Path) -> None:
    path = tmp_path / "test_module.py"
    path.write_text(MODULE)
    assert grouped_tests(path) == {
        "test_uses_the_server",
        "test_uses_it_through_a_fixture",
        "test_method",
    }


def test_an_autouse_shared_fixture_groups_every_test(tmp_path: Path) -> None:
    path = tmp_path / "test_autouse.py"
    path.write_text(MODULE.replace('scope="module")', 'scope="module", autouse=True)'))
    assert grouped_tests(path) is None


def test_a_module_without_shared_fixtures_or_not_python_groups_nothing(tmp_path: Path) -> None:
    path = tmp_path / "test_plain.py"
    path.write_text(MODULE.replace('scope="module"', 'scope="function"'))
    assert grouped_tests(path) == frozenset()
    (tmp_path / "broken.py").write_text("def (")
    assert grouped_tests(tmp_path / "broken.py") == frozenset()
    assert grouped_tests(tmp_path / "missing.py") == frozenset()

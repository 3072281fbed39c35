"""The builder: what it refuses (and how it says so), what a Bundle holds, and that no input crashes it."""

from __future__ import annotations

import builtins
import hashlib
import keyword
import operator
import statistics
import time
import types
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fnstage.build import MAGIC, BuildLimits, Bundle, CompiledModule, build, load_modules
from fnstage.build.bundle import source_hash
from fnstage.domain.errors import BuildFailed, FnstageError, InvalidInput, TooLarge

MAIN = "def main(ctx):\n    return 'ok'\n"
INDEX = (
    "import json\n"
    "from utils import greet\n"
    "from lib.db import connect\n\n\n"
    "async def main(ctx):\n"
    "    return {'message': greet(ctx['name']), 'db': connect(), 'json': json.dumps(1)}\n"
)
UTILS = "def greet(name):\n    return f'Hello, {name}!'\n"
DB = "from . import settings\n\n\ndef connect():\n    return settings.URL\n"
SETTINGS = "URL = 'sqlite://'\n"
PROJECT = {"index.py": INDEX, "utils.py": UTILS, "lib/db.py": DB, "lib/settings.py": SETTINGS}
NOT_FOUND = (
    "it is not a file of this function, the standard library, or a gateway dependency "
    "(add it with `fnstage deps set`)"
)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PROJECT_EXAMPLES = settings(FUZZ, max_examples=60)  # each example builds a whole project several times


def refused(files: object, entrypoint: object = "index.py", **kwargs: Any) -> FnstageError:
    with pytest.raises(FnstageError) as info:
        build(files, entrypoint, **kwargs)
    return info.value


def problems(files: Mapping[str, str], **kwargs: Any) -> list[dict[str, Any]]:
    with pytest.raises(BuildFailed) as info:
        build(files, **kwargs)
    assert info.value.field == "files"
    details: list[dict[str, Any]] = info.value.details
    return details


def messages(files: Mapping[str, str], **kwargs: Any) -> list[str]:
    return [problem["message"] for problem in problems(files, **kwargs)]


def run(bundle: Bundle) -> dict[str, types.ModuleType]:
    """A minimal stand-in for the runtime loader: enough to prove the compiled modules work together."""
    compiled = load_modules(bundle.compiled)
    assert compiled is not None
    loaded: dict[str, types.ModuleType] = {"": types.ModuleType("")}
    own_builtins = dict(builtins.__dict__)

    def load(name: str) -> types.ModuleType:
        if name not in loaded:
            module = compiled[name]
            parent, _, child = name.rpartition(".")
            load(parent)
            loaded[name] = types.ModuleType(name)
            loaded[name].__dict__.update(
                __builtins__=own_builtins, __package__=name if module.is_package else parent
            )
            exec(module.code, loaded[name].__dict__)
            setattr(loaded[parent], child, loaded[name])
        return loaded[name]

    def import_(
        name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0
    ) -> Any:
        if level:
            package = globals["__package__"].split(".") if globals["__package__"] else []
            target = ".".join([*package[: len(package) - level + 1], *([name] if name else [])])
        elif name.partition(".")[0] in {n.partition(".")[0] for n in compiled}:
            target = name
        else:
            return builtins.__import__(name, globals, locals, fromlist, level)
        module = load(target)
        for item in fromlist or ():
            if f"{target}.{item}".lstrip(".") in compiled:
                load(f"{target}.{item}".lstrip("."))
        return module if fromlist or level else load(name.partition(".")[0])

    own_builtins["__import__"] = import_
    load(bundle.entry_module)
    return loaded


# --- paths ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("", "it is empty"),
        ("/etc/index.py", "absolute paths are not allowed"),
        ("../index.py", "'..' is not allowed"),
        ("lib/../x.py", "'..' is not allowed"),
        ("./x.py", "'.' is not allowed"),
        ("lib//x.py", "empty folder name"),
        ("lib/", "empty folder name"),
        ("lib\\x.py", "use '/' between folders"),
        ("x\x00.py", "control characters"),
        ("x\n.py", "control characters"),
        ("x\x7f.py", "control characters"),
        ("café.py", "only ASCII"),
        ("notes.txt", "only .py files"),
        ("x.pyc", "only .py files"),
        ("lib", "only .py files"),
        (".py", "'' is not a Python identifier"),
        ("my-utils.py", "'my-utils' is not a Python identifier"),
        ("1st.py", "'1st' is not a Python identifier"),
        ("lib.v2/x.py", "'lib.v2' is not a Python identifier"),
        ("x.py.py", "'x.py' is not a Python identifier"),
        ("class.py", "'class' is not a Python identifier"),
        ("my lib/x.py", "'my lib' is not a Python identifier"),
        ("__init__.py", "top folder is not a package"),
        ("__init__/x.py", "'__init__' cannot be a folder name"),
        ("fnstage.py", "'fnstage' is reserved for the fnstage SDK"),
        ("fnstage/x.py", "'fnstage' is reserved"),
        ("a" * 300 + ".py", "303 characters long, at most 255"),
    ],
)
def test_refuses_bad_paths_naming_the_path_the_reason_and_the_rule(path: str, why: str) -> None:
    error = refused({"index.py": MAIN, path: MAIN})
    assert isinstance(error, InvalidInput) and not isinstance(error, BuildFailed)
    assert error.field == "files"
    assert repr(path[:60]) in error.message
    assert why in error.message
    assert "such as utils.py or lib/db.py" in error.message  # what is allowed


def test_refuses_a_bad_entrypoint_path_as_the_entrypoint_field() -> None:
    error = refused({"index.py": MAIN}, entrypoint="../index.py")
    assert isinstance(error, InvalidInput)
    assert error.field == "entrypoint"
    assert error.message.startswith("invalid entrypoint '../index.py'")


def test_refuses_an_entrypoint_that_is_not_a_file() -> None:
    error = refused({"index.py": MAIN, "utils.py": ""}, entrypoint="main.py")
    assert error.field == "entrypoint"
    assert "'main.py' is not one of the files (index.py, utils.py)" in error.message


@pytest.mark.parametrize("entrypoint", [None, 3, b"index.py"])
def test_refuses_an_entrypoint_that_is_not_text(entrypoint: object) -> None:
    assert refused({"index.py": MAIN}, entrypoint=entrypoint).field == "entrypoint"


@pytest.mark.parametrize("files", [None, ["index.py"], "index.py", b"x"])
def test_refuses_files_that_are_not_a_mapping(files: object) -> None:
    error = refused(files)
    assert isinstance(error, InvalidInput) and error.field == "files"
    assert "map each path to its source text" in error.message


def test_refuses_no_files() -> None:
    error = refused({})
    assert error.field == "files" and "at least its entrypoint" in error.message


def test_refuses_a_path_that_is_not_text() -> None:
    error = refused({"index.py": MAIN, 7: ""})
    assert error.field == "files" and "must be text, got int" in error.message


@pytest.mark.parametrize("content", [b"def main(ctx): pass", None, 1])
def test_refuses_contents_that_are_not_text(content: object) -> None:
    error = refused({"index.py": content})
    assert error.field == "files"
    assert f"index.py: file contents must be text (str), got {type(content).__name__}" in error.message


def test_refuses_text_that_utf8_cannot_store_with_its_position() -> None:
    error = refused({"index.py": MAIN + "x = '\ud800'\n"})
    assert isinstance(error, InvalidInput) and error.field == "files"
    assert error.message.startswith("index.py:3:6:") and "lone surrogate" in error.message


def test_refuses_names_differing_only_by_unicode_normalisation_because_paths_are_ascii() -> None:
    nfc, nfd = "caf\u00e9.py", "cafe\u0301.py"
    for path in (nfc, nfd):
        assert "only ASCII" in refused({"index.py": MAIN, path: ""}).message


@pytest.mark.parametrize(
    ("paths", "why"),
    [
        (["utils.py", "Utils.py"], "modules `Utils` and `utils` differ only in case"),
        (["lib/a.py", "Lib/b.py"], "modules `Lib` and `lib` differ only in case"),
        (["lib.py", "lib/x.py"], "lib.py and lib/ would both be module `lib`"),
        (["lib.py", "lib/__init__.py"], "lib.py and lib/__init__.py would both be module `lib`"),
        (["a/lib.py", "a/lib/deep/x.py"], "a/lib.py and a/lib/ would both be module `a.lib`"),
    ],
)
def test_refuses_two_files_that_would_be_one_module(paths: list[str], why: str) -> None:
    error = refused({"index.py": MAIN, **dict.fromkeys(paths, "")})
    assert isinstance(error, InvalidInput) and error.field == "files"
    assert why in error.message


# --- limits ---------------------------------------------------------------------------------------------


def test_refuses_too_many_files_with_the_numbers() -> None:
    files = {"index.py": MAIN, **{f"m{i}.py": "" for i in range(100)}}
    error = refused(files)
    assert isinstance(error, TooLarge) and error.status == 413 and error.field == "files"
    assert error.message == "101 files: a function may have at most 100 files"
    assert error.details == {"count": 101, "limit": 100}


def test_counts_a_file_in_utf8_bytes_not_characters() -> None:
    limits = BuildLimits(max_file_bytes=1000)
    fits = MAIN + "#" + "é" * 484  # 516 characters, exactly 1000 bytes
    assert len(fits) == 516 and len(fits.encode()) == 1000
    build({"index.py": fits}, limits=limits)
    error = refused({"index.py": fits + "é"}, limits=limits)
    assert isinstance(error, TooLarge) and error.field == "files"
    assert error.message == "index.py is 1,002 bytes: a file may have at most 1,000 bytes"
    assert error.details == {"path": "index.py", "size": 1002, "limit": 1000}


def test_default_file_limit_is_one_mib() -> None:
    build({"index.py": MAIN + "#" * (1024 * 1024 - len(MAIN))})
    error = refused({"index.py": MAIN + "#" * (1024 * 1024 - len(MAIN) + 1)})
    assert isinstance(error, TooLarge)
    assert "1,048,577 bytes: a file may have at most 1,048,576 bytes (1 MiB)" in error.message


def test_refuses_too_many_bytes_in_all() -> None:
    files = {"index.py": MAIN, **{f"m{i}.py": "#" * 900_000 for i in range(6)}}
    error = refused(files)
    assert isinstance(error, TooLarge) and error.field == "files"
    total = len(MAIN) + 6 * 900_000
    assert error.message == (
        f"the files total {total:,} bytes: a function may have at most 5,242,880 bytes (5 MiB) in all"
    )
    assert error.details == {"size": total, "limit": 5 * 1024 * 1024}


# --- dependencies ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dependencies", ["requests==2.32.3", b"x", 5, ["requests>="], [None]])
def test_refuses_malformed_dependencies(dependencies: object) -> None:
    error = refused({"index.py": MAIN}, dependencies=dependencies)
    assert isinstance(error, InvalidInput) and error.field == "dependencies"


# --- syntax ---------------------------------------------------------------------------------------------


def test_reports_a_syntax_error_with_file_line_and_column() -> None:
    with pytest.raises(BuildFailed) as info:
        build({"index.py": "from utils import x\n" + MAIN, "utils.py": "x = 1\n\ndef f(:\n    pass\n"})
    error = info.value
    assert error.status == 422 and error.code == "build_failed" and error.field == "files"
    assert error.message == "utils.py:3:7: invalid syntax"
    assert error.details == [{"file": "utils.py", "line": 3, "col": 7, "message": "invalid syntax"}]


def test_collects_every_problem_and_summarises_the_first() -> None:
    files = {
        "index.py": "import requests\n\ndef handler(ctx):\n    pass\n",
        "utils.py": "def f(:\n",
        "zeta.py": "return 1\n",
    }
    with pytest.raises(BuildFailed) as info:
        build(files)
    assert info.value.message == (
        f"index.py:1:1: cannot resolve `requests` imported by index.py:1: {NOT_FOUND} (and 3 more problems)"
    )
    assert [(p["file"], p["line"], p["col"]) for p in info.value.details] == [
        ("index.py", 1, 1),
        ("index.py", None, None),
        ("utils.py", 1, 7),
        ("zeta.py", 1, 1),
    ]
    assert info.value.details[3]["message"] == "'return' outside function"


def test_summary_says_one_more_problem_in_the_singular() -> None:
    with pytest.raises(BuildFailed) as info:
        build({"index.py": "import nope\n", "utils.py": MAIN})
    assert info.value.message.endswith("(and 1 more problem)")


def test_details_are_capped_but_every_problem_is_counted() -> None:
    source = MAIN + "".join(f"import missing{i}\n" for i in range(150))
    with pytest.raises(BuildFailed) as info:
        build({"index.py": source})
    assert len(info.value.details) == 100
    assert info.value.message.endswith("(and 149 more problems)")


def test_locates_a_nul_character() -> None:
    assert problems({"index.py": MAIN + "x = 1\nyy = '\0'\n"}) == [
        {"file": "index.py", "line": 4, "col": 7, "message": "a NUL character is not allowed in source code"}
    ]


@pytest.mark.parametrize(
    "source",
    [
        "-" * 200_000 + "1",
        "+0" * 30_000,
        "x" + ".a" * 30_000,
        "not " * 100_000 + "x",
        "(" * 300 + ")" * 300,
        "f(" * 1000 + ")" * 1000,
        "".join(" " * i + "if x:\n" for i in range(120)),
        "x = " + "9" * 5000,
    ],
    ids=["unary", "binary", "attributes", "not", "parens", "calls", "indent", "huge-int"],
)
def test_reports_absurd_nesting_instead_of_crashing(source: str) -> None:
    [problem] = problems({"index.py": source})
    assert problem["file"] == "index.py" and problem["message"]


def test_counts_columns_in_characters_for_parser_and_compiler_errors() -> None:
    [parser] = problems({"index.py": "é = 'ü'; (\n"})
    assert (parser["line"], parser["col"]) == (1, 10)
    [compiler] = problems({"index.py": MAIN + "é = 'ü'; return 2\n"})
    assert (compiler["line"], compiler["col"], compiler["message"]) == (3, 10, "'return' outside function")
    [imported] = problems({"index.py": MAIN + "é = 'ü'; import nope\n"})
    assert (imported["line"], imported["col"]) == (3, 10)


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_counts_lines_like_the_tokenizer(newline: str) -> None:
    [problem] = problems({"index.py": newline.join(["def main(ctx):", "    pass", "import nope", ""])})
    assert problem["line"] == 3


def test_compiles_exactly_what_compile_would_with_the_relative_path_as_filename() -> None:
    bundle = build(PROJECT)
    modules = load_modules(bundle.compiled)
    assert modules is not None
    for path, source in PROJECT.items():
        [module] = [m for m in modules.values() if m.path == path]
        assert module.code == compile(source, path, "exec", dont_inherit=True, optimize=0)
        assert module.code.co_filename == path


def test_future_imports_of_the_builder_do_not_leak_into_user_code() -> None:
    # this test module uses `from __future__ import annotations`; user code must not inherit it
    bundle = build({"index.py": MAIN + "def f(x: int) -> str: pass\n"})
    namespace = run(bundle)["index"].__dict__
    assert namespace["f"].__annotations__ == {"x": int, "return": str}


# --- imports --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "from __future__ import annotations\nimport json, os.path\nfrom collections.abc import Mapping\n",
        "import fnstage\nfrom fnstage import HTTPError, Response\nimport fnstage.sdk\n",
        "import utils\nfrom utils import anything_at_all\nimport lib.db\nfrom lib import db\nfrom lib.db import connect\n",
        "from . import utils\nfrom .lib import db\nfrom .lib.db import connect\nfrom . import lib, utils as u\n",
        "from . import *\nfrom .utils import *\n",
        "import lib\nimport lib.db as database\n",
    ],
)
def test_resolves_the_standard_library_the_sdk_and_the_functions_own_modules(source: str) -> None:
    build({**PROJECT, "index.py": source + MAIN})


def test_resolves_declared_dependencies_by_their_import_names() -> None:
    source = (
        "import requests\nimport bs4\nfrom yaml import safe_load\nimport PIL.Image\nimport dateutil.parser\n"
    )
    pins = [
        "requests==2.32.3",
        "beautifulsoup4==4.12.3",
        "PyYAML==6.0.2",
        "pillow==11.0.0",
        "python-dateutil==2.9",
    ]
    build({"index.py": source + MAIN}, dependencies=pins)
    assert messages({"index.py": "import requests\n" + MAIN}) == [
        f"cannot resolve `requests` imported by index.py:1: {NOT_FOUND}"
    ]


def test_checks_imports_anywhere_in_a_module() -> None:
    source = MAIN + "def f():\n    import nope\n\nclass C:\n    def g(self):\n        from nada import x\n"
    assert [(p["line"], p["col"]) for p in problems({"index.py": source})] == [(4, 5), (8, 9)]


@pytest.mark.parametrize(
    "block",
    [
        "if x:\n    pass\nelif y:\n    {}\n",
        "if x:\n    pass\nelse:\n    {}\n",
        "for x in y:\n    pass\nelse:\n    {}\n",
        "while x:\n    pass\nelse:\n    {}\n",
        "with x:\n    {}\n",
        "try:\n    pass\nexcept E:\n    {}\n",
        "try:\n    pass\nexcept* E:\n    {}\n",
        "try:\n    pass\nexcept E:\n    pass\nelse:\n    {}\n",
        "try:\n    pass\nfinally:\n    {}\n",
        "match x:\n    case 1:\n        pass\n    case _:\n        {}\n",
        "class C:\n    {}\n",
        "async def f():\n    async with x:\n        async for y in z:\n            {}\n",
    ],
)
def test_finds_imports_in_every_kind_of_block(block: str) -> None:
    source = block.format("import nope")
    line = source.count("\n")
    assert problems({"index.py": MAIN + source}) == [
        {
            "file": "index.py",
            "line": 2 + line,
            "col": source.splitlines()[-1].index("import") + 1,
            "message": f"cannot resolve `nope` imported by index.py:{2 + line}: {NOT_FOUND}",
        }
    ]


def test_accepts_implicit_packages_and_relative_imports_inside_packages() -> None:
    files = {
        "index.py": "from api.v1.users import list_users\nfrom api import v1\n" + MAIN,
        "api/helpers.py": "HELP = 1\n",
        "api/v1/users.py": "from .. import helpers\nfrom ..helpers import HELP\nfrom . import orders\n"
        "def list_users():\n    return HELP\n",
        "api/v1/orders.py": "from ...api import helpers\n",
        "pkg/__init__.py": "from .impl import thing\n",
        "pkg/impl.py": "thing = 1\n",
    }
    bundle = build(files)
    modules = load_modules(bundle.compiled)
    assert modules is not None
    assert sorted(modules) == [
        "api",
        "api.helpers",
        "api.v1",
        "api.v1.orders",
        "api.v1.users",
        "index",
        "pkg",
        "pkg.impl",
    ]


@pytest.mark.parametrize(
    ("path", "source", "name", "reason"),
    [
        (
            "index.py",
            "import lib.nope",
            "lib.nope",
            "this function has no file lib/nope.py or folder lib/nope/",
        ),
        (
            "index.py",
            "from lib import nope",
            "lib.nope",
            "this function has no file lib/nope.py or folder lib/nope/",
        ),
        (
            "index.py",
            "from lib.nope import x",
            "lib.nope",
            "this function has no file lib/nope.py or folder lib/nope/",
        ),
        ("index.py", "from . import nope", ".nope", "this function has no file nope.py or folder nope/"),
        ("index.py", "from .nope import x", ".nope", "this function has no file nope.py or folder nope/"),
        ("index.py", "from .. import x", "..", "it goes above the function's top folder"),
        (
            "lib/db.py",
            "from .. import utils\nfrom ... import x",
            "...",
            "it goes above the function's top folder",
        ),
        (
            "lib/db.py",
            "from . import nope",
            ".nope",
            "this function has no file lib/nope.py or folder lib/nope/",
        ),
        (
            "lib/db.py",
            "from .nope import x",
            ".nope",
            "this function has no file lib/nope.py or folder lib/nope/",
        ),
        (
            "index.py",
            "import utils.sub",
            "utils.sub",
            "this function has no file utils/sub.py or folder utils/sub/",
        ),
        ("index.py", "import nope.sub", "nope.sub", NOT_FOUND),
        ("index.py", "from nope import x", "nope", NOT_FOUND),
    ],
)
def test_refuses_imports_that_resolve_to_nothing(path: str, source: str, name: str, reason: str) -> None:
    files = {**PROJECT, path: PROJECT.get(path, "") + "\n" + source + "\n"}
    line = files[path].count("\n")
    assert messages(files) == [f"cannot resolve `{name}` imported by {path}:{line}: {reason}"]


def test_a_function_module_shadows_the_standard_library() -> None:
    files = {"index.py": "import json.decoder\n" + MAIN, "json.py": ""}
    assert messages(files) == [
        "cannot resolve `json.decoder` imported by index.py:1: "
        "this function has no file json/decoder.py or folder json/decoder/"
    ]
    build({"index.py": "from json import anything\n" + MAIN, "json.py": ""})


def test_names_from_a_package_with_init_may_be_attributes() -> None:
    build({"index.py": "from pkg import VALUE\nfrom . import pkg\n" + MAIN, "pkg/__init__.py": "VALUE = 1\n"})


# --- main -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "def main(ctx):\n    pass\n",
        "async def main(ctx):\n    pass\n",
        "def handler(ctx):\n    pass\nmain = handler\n",
        "main = lambda ctx: None\n",
        "main, other = print, print\n",
        "from typing import Callable\nmain: Callable[..., object] = print\n",
        "from utils import main\n",
        "from utils import greet as main\n",
        "if True:\n    def main(ctx): pass\nelse:\n    main = None\n",
        "try:\n    from utils import main\nexcept ImportError:\n    def main(ctx): pass\n",
    ],
)
def test_accepts_every_way_to_define_main_at_top_level(source: str) -> None:
    build({"index.py": source, "utils.py": "def main(ctx): pass\ngreet = main\n"})


@pytest.mark.parametrize(
    "source",
    [
        "",
        "def handler(ctx):\n    pass\n",
        "def outer():\n    def main(ctx):\n        pass\n",
        "class Handler:\n    def main(self, ctx):\n        pass\n",
        "main: int\n",
        "import main\n",
        "x.main = print\n",
    ],
)
def test_refuses_an_entrypoint_without_top_level_main(source: str) -> None:
    assert problems({"index.py": source, "main.py": ""}) == [
        {
            "file": "index.py",
            "line": None,
            "col": None,
            "message": "no top-level `main` function: define `def main(ctx)` or `async def main(ctx)`",
        }
    ]
    with pytest.raises(BuildFailed) as info:
        build({"index.py": source, "main.py": ""})
    assert info.value.message == (
        "index.py: no top-level `main` function: define `def main(ctx)` or `async def main(ctx)`"
    )


def test_only_the_entrypoint_needs_main() -> None:
    build({"api/handler.py": MAIN, "utils.py": ""}, entrypoint="api/handler.py")


# --- the Bundle -----------------------------------------------------------------------------------------


def test_bundle_holds_hashes_a_copy_of_the_files_and_the_entry_module() -> None:
    files = dict(PROJECT)
    bundle = build(files)
    files["utils.py"] = "changed"
    assert bundle.entrypoint == "index.py" and bundle.entry_module == "index"
    assert dict(bundle.files) == PROJECT
    assert bundle.file_hashes == {p: hashlib.sha256(t.encode()).hexdigest() for p, t in PROJECT.items()}
    assert bundle.hash == source_hash("index.py", bundle.file_hashes)
    assert build({"api/v1/handler.py": MAIN}, entrypoint="api/v1/handler.py").entry_module == "api.v1.handler"


def test_folders_without_init_become_empty_packages_outside_files() -> None:
    bundle = build(PROJECT)
    modules = load_modules(bundle.compiled)
    assert modules is not None
    lib = modules["lib"]
    assert (lib.name, lib.path, lib.is_package) == ("lib", "lib/__init__.py", True)
    assert lib.path not in bundle.files
    assert lib.code.co_filename == "lib/__init__.py" and lib.code.co_names == ()
    assert modules["lib.db"] == CompiledModule("lib.db", "lib/db.py", False, modules["lib.db"].code)


def test_round_trip_the_compiled_modules_run_and_main_works() -> None:
    files = {**PROJECT, "index.py": INDEX.replace("async def", "def"), "lib/settings.py": "URL = 'db://x'\n"}
    namespace = run(build(files))
    assert namespace["index"].main({"name": "Ada"}) == {"message": "Hello, Ada!", "db": "db://x", "json": "1"}


def test_round_trip_of_a_single_file_in_a_fresh_dict() -> None:
    bundle = build({"index.py": "import math\n\ndef main(ctx):\n    return math.sqrt(ctx)\n"})
    modules = load_modules(bundle.compiled)
    assert modules is not None
    namespace: dict[str, Any] = {}
    exec(modules["index"].code, namespace)
    assert namespace["main"](16) == 4.0


def test_another_interpreters_bundle_is_not_loaded() -> None:
    compiled = build(PROJECT).compiled
    assert compiled.startswith(MAGIC)
    assert load_modules(bytes([compiled[0] ^ 1]) + compiled[1:]) is None
    assert load_modules(b"") is None


def test_a_three_file_function_builds_in_well_under_5_ms() -> None:
    files = {"index.py": INDEX, "utils.py": UTILS, "lib/db.py": "def connect():\n    return 'x'\n"}
    timings = []
    for _ in range(200):
        start = time.perf_counter()
        build(files, dependencies=["requests==2.32.3"])
        timings.append(time.perf_counter() - start)
    assert statistics.median(timings) < 0.005


# --- properties -----------------------------------------------------------------------------------------

PATH_CHARS = st.sampled_from([*"ab_Z9/.\\ -é\x00\n", "py", ".py", "..", "__init__", "fnstage"])
paths = st.one_of(
    st.text(max_size=30),
    st.lists(PATH_CHARS, max_size=12).map("".join),
    st.from_regex(r"\A[a-z_/.]{0,12}\.py\Z"),
)
SOURCE_PIECES = st.sampled_from(
    [
        "import ", "from ", " import ", ".", "..", "x", "main", "json", "os", "fnstage", "requests", " ",
        "\n", "\r", "\t", "    ", "(", ")", "[", "]", "def ", "async ", "await ", "return ", ":", "=", "*",
        ",", "'", '"', "f'{", "}", "\0", "é", "\ud800", "lambda", "class ", "nonlocal ", "global ", "yield",
        "#", "\\", "1", "as ", "if ", "else", "try:", "except", "\ufeff",
    ]
)  # fmt: skip
sources = st.one_of(st.text(max_size=200), st.lists(SOURCE_PIECES, max_size=40).map("".join))


def only_fnstage_errors(call: Callable[[], object]) -> None:
    try:
        call()
    except FnstageError as error:
        assert error.message and isinstance(error.message, str)
        error.to_dict()


@pytest.mark.filterwarnings("ignore::SyntaxWarning", "ignore::DeprecationWarning")
@FUZZ
@given(path=paths, source=sources)
def test_any_path_and_source_is_built_or_refused_with_a_fnstage_error(path: str, source: str) -> None:
    only_fnstage_errors(lambda: build({path: source}, entrypoint=path))
    only_fnstage_errors(lambda: build({"index.py": MAIN, path: source}))


@pytest.mark.filterwarnings("ignore::SyntaxWarning", "ignore::DeprecationWarning")
@FUZZ
@given(
    files=st.dictionaries(
        st.one_of(paths, st.integers()), st.one_of(sources, st.binary(), st.none()), max_size=6
    ),
    entrypoint=st.one_of(paths, st.none()),
    dependencies=st.lists(
        st.one_of(st.sampled_from(["requests==2.32.3", "PyYAML==6.0"]), st.text(max_size=12))
    ),
)
def test_any_file_map_is_built_or_refused_with_a_fnstage_error(
    files: dict[Any, Any], entrypoint: Any, dependencies: list[str]
) -> None:
    only_fnstage_errors(lambda: build(files, entrypoint, dependencies))


identifiers = st.builds(operator.add, st.sampled_from("abcdefgjs"), st.text("abcfs_19", max_size=4)).filter(
    lambda name: not keyword.iskeyword(name)
)


@st.composite
def projects(draw: st.DrawFn) -> tuple[dict[str, str], str]:
    """A valid function: modules in (possibly nested, possibly __init__-less) folders importing each other."""
    module_names = draw(
        st.lists(st.lists(identifiers, min_size=1, max_size=3).map(tuple), min_size=1, max_size=8)
    )
    folders = {name[:depth] for name in module_names for depth in range(1, len(name))}
    modules = sorted({name for name in module_names if name not in folders})  # a file can't be a folder too
    with_init = draw(st.sets(st.sampled_from(sorted(folders)))) if folders else set()
    files: dict[str, str] = {}
    for name in modules:
        imports = draw(st.lists(st.sampled_from(modules), max_size=3))
        body = "".join(f"import {'.'.join(other)}\n" for other in imports)
        body += "import json\nfrom fnstage import HTTPError\n" + draw(
            st.sampled_from(["", "# é\n", "x = 'ü'\n"])
        )
        files["/".join(name) + ".py"] = body + MAIN
    for folder in with_init:
        files["/".join(folder) + "/__init__.py"] = "VALUE = 1\n"
    entrypoint = draw(st.sampled_from(["/".join(name) + ".py" for name in modules]))
    return files, entrypoint


@PROJECT_EXAMPLES
@given(project=projects())
def test_valid_generated_projects_always_build(project: tuple[dict[str, str], str]) -> None:
    files, entrypoint = project
    bundle = build(files, entrypoint)
    modules = load_modules(bundle.compiled)
    assert modules is not None
    assert {m.path for m in modules.values() if m.path in files} == set(files)
    for module in modules.values():
        folders = module.path.split("/")[:-1]
        assert all(".".join(folders[:depth]) in modules for depth in range(1, len(folders) + 1))
    assert bundle.entry_module == entrypoint.removesuffix(".py").replace("/", ".")


@PROJECT_EXAMPLES
@given(project=projects(), order=st.randoms(use_true_random=False))
def test_file_hashes_are_stable_and_independent_of_order(
    project: tuple[dict[str, str], str], order: Any
) -> None:
    files, entrypoint = project
    items = list(files.items())
    order.shuffle(items)
    first, second = build(files, entrypoint), build(dict(items), entrypoint)
    assert first.file_hashes == second.file_hashes
    assert first.hash == second.hash
    assert first.file_hashes == {p: hashlib.sha256(t.encode("utf-8")).hexdigest() for p, t in files.items()}


@PROJECT_EXAMPLES
@given(project=projects(), data=st.data())
def test_bundle_hash_changes_iff_a_file_or_the_entrypoint_changes(
    project: tuple[dict[str, str], str], data: st.DataObject
) -> None:
    files, entrypoint = project
    original = build(files, entrypoint).hash
    path = data.draw(st.sampled_from(sorted(files)))
    comment = data.draw(st.text(alphabet=st.characters(blacklist_categories=["Cs", "Cc"]), max_size=10))
    edited = {**files, path: files[path] + f"# {comment}\n"}
    assert build(edited, entrypoint).hash != original
    assert build(dict(files), entrypoint).hash == original
    other = data.draw(st.sampled_from(sorted(files)))
    assume(files[other].endswith(MAIN))  # it defines main, so it can be the entrypoint
    assert (build(files, other).hash == original) == (other == entrypoint)

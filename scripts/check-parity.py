#!/usr/bin/env python3
"""Checks docs/parity.md against the typed surfaces of the four languages.

For each surface compared (the client: Rust `Tasker`, Python `Client`, Ruby `TaskerCore::Client`,
TypeScript `Client`; the handler context: Rust `StepEvent`, Python/Ruby/TypeScript `StepContext`),
every public method found in a language's typed surface must appear in docs/parity.md: in a row
of the matrix (its cell for that language names the method in backticks) or in the
"Language-specific" table with a reason. And every cell must hold up: the method it names exists
in that language's surface, and the test it names exists and mentions the method.

    scripts/check-parity.py              # exit 1 with one line per difference
    scripts/check-parity.py --list       # print each surface's methods (to write new rows)
    scripts/check-parity.py --self-test  # the check reports a missing row, method or test

Surfaces are read from the sources the typed surfaces are made of: `core/src/engine/*.rs` and
`core/src/worker.rs` (rustdoc's pub API), `bindings-python/python/tasker_core/*.py` (checked with
`_native.pyi` by mypy/stubtest), `bindings-ruby/sig/tasker_core.rbs`, and
`bindings-node/ts/*.ts` (which tsc turns into the published `.d.ts`). Standard library only, so
it runs on a fresh machine before anything is built.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path
from typing import Dict, List, Set, Tuple

ROOT = Path(__file__).resolve().parent.parent
MATRIX = ROOT / "docs" / "parity.md"
LANGUAGES = ("rust", "python", "ruby", "typescript")
TEST_ROOTS = {
    "rust": [ROOT / "core" / "tests", ROOT / "core" / "src"],
    "python": [ROOT / "bindings-python" / "tests"],
    "ruby": [ROOT / "bindings-ruby" / "spec"],
    "typescript": [ROOT / "bindings-node" / "test"],
}


def snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


# -- reading the surfaces --------------------------------------------------------------------------


def rust_impl_methods(files: List[Path], type_name: str) -> Set[str]:
    """`pub fn`/`pub async fn` names inside `impl <type_name> {` blocks (brace-matched)."""
    names: Set[str] = set()
    for path in files:
        text = path.read_text()
        for m in re.finditer(r"^impl(?:<[^>]*>)? " + re.escape(type_name) + r" \{", text, re.M):
            depth, i = 0, m.end() - 1
            start = i
            while i < len(text):
                if text[i] == "{":
                    depth += 1
                elif text[i] == "}":
                    depth -= 1
                    if depth == 0:
                        break
                i += 1
            block = text[start:i]
            names |= set(re.findall(r"^    pub (?:async )?fn ([a-z_0-9]+)", block, re.M))
    return names


def rust_struct_fields(path: Path, type_name: str) -> Set[str]:
    text = path.read_text()
    m = re.search(r"pub struct " + re.escape(type_name) + r" \{(.*?)\n\}", text, re.S)
    return set(re.findall(r"^    pub ([a-z_0-9]+):", m.group(1), re.M)) if m else set()


def python_class_members(path: Path, class_name: str) -> Set[str]:
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            names: Set[str] = set()
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    names.add(item.name)
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    names.add(item.target.id)
            # The asyncio twins (`x_async`) are one concept with `x`.
            return {n for n in names if not n.startswith("_") and not n.endswith("_async")}
    raise SystemExit(f"{path}: no class {class_name}")


def rbs_class_members(path: Path, class_path: str) -> Set[str]:
    """`def`/`attr_reader` names of `class <last segment>` nested as `class_path` says."""
    lines = path.read_text().splitlines()
    wanted = class_path.split("::")
    stack: List[Tuple[str, int]] = []
    names: Set[str] = set()
    for line in lines:
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        m = re.match(r"(module|class) ([A-Z]\w*)", stripped)
        if m:
            stack.append((m.group(2), indent))
            continue
        if stripped == "end" and stack and stack[-1][1] == indent:
            stack.pop()
            continue
        if [s[0] for s in stack] == wanted:
            d = re.match(r"def (?:self\.)?([a-z_0-9?!]+):", stripped) or re.match(r"attr_reader ([a-z_0-9?]+):", stripped)
            if d and d.group(1) not in ("initialize", "inspect"):
                names.add(d.group(1))
    return names


def ts_class_members(path: Path, class_name: str) -> Set[str]:
    text = path.read_text()
    m = re.search(r"^export class " + re.escape(class_name) + r"\b[^{]*\{", text, re.M)
    if not m:
        raise SystemExit(f"{path}: no class {class_name}")
    body = text[m.end() : text.index("\n}\n", m.end())]
    names = set(re.findall(r"^  (?:static )?(?:async )?(?:get )?([a-z][A-Za-z0-9]*)\s*[(<]", body, re.M))
    names |= set(re.findall(r"^  readonly ([a-z][A-Za-z0-9]*)[!?]?:", body, re.M))
    return {n for n in names if n not in ("constructor",)}


def surfaces() -> Dict[str, Dict[str, Set[str]]]:
    engine = sorted((ROOT / "core" / "src" / "engine").glob("*.rs"))
    py = ROOT / "bindings-python" / "python" / "tasker_core"
    rbs = ROOT / "bindings-ruby" / "sig" / "tasker_core.rbs"
    ts = ROOT / "bindings-node" / "ts"
    worker_rs = ROOT / "core" / "src" / "worker.rs"
    return {
        "client": {
            "rust": rust_impl_methods(engine, "Tasker"),
            "python": python_class_members(py / "client.py", "Client"),
            "ruby": rbs_class_members(rbs, "TaskerCore::Client"),
            "typescript": {snake(n) for n in ts_class_members(ts / "client.ts", "Client")},
        },
        "context": {
            "rust": rust_impl_methods([worker_rs], "StepEvent") | rust_struct_fields(worker_rs, "StepEvent"),
            "python": python_class_members(py / "handler.py", "StepContext"),
            "ruby": rbs_class_members(rbs, "TaskerCore::StepContext"),
            "typescript": {snake(n) for n in ts_class_members(ts / "context.ts", "StepContext")},
        },
    }


# -- reading the matrix ----------------------------------------------------------------------------

CELL = re.compile(r"`([A-Za-z_][A-Za-z0-9_?!.]*)`(?:\s*[·—-]\s*`([^`]+)`)?")


def parse_matrix(text: str) -> Tuple[Dict[str, List[Tuple[str, str, str, str]]], Dict[str, Dict[str, Set[str]]], List[str]]:
    """Rows per surface section (`## Client` / `## Handler context`): (concept, language, api,
    test); the language-specific names per surface; and format problems."""
    rows: Dict[str, List[Tuple[str, str, str, str]]] = {"client": [], "context": [], "behaviour": []}
    specific: Dict[str, Dict[str, Set[str]]] = {s: {lang: set() for lang in LANGUAGES} for s in ("client", "context")}
    problems: List[str] = []
    section = None
    for number, line in enumerate(text.splitlines(), 1):
        heading = re.match(r"^## (.*)", line)
        if heading:
            title = heading.group(1).lower()
            section = "client" if title.startswith("client") else "context" if title.startswith("handler context") else None
            if title.startswith("language-specific"):
                section = "specific"
            if title.startswith("behaviour"):
                section = "behaviour"
            continue
        if not line.startswith("|") or re.match(r"^\|\s*-", line) or section is None:
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if section == "specific":
            if len(cells) < 4 or cells[0].lower() == "surface":
                continue
            surface, language, names, reason = cells[0].lower(), cells[1].lower(), cells[2], cells[3]
            if surface not in specific or language not in LANGUAGES or not reason:
                problems.append(f"parity.md:{number}: a language-specific row needs surface, language, names and a reason")
                continue
            for name in re.findall(r"`([^`]+)`", names):
                specific[surface][language].add(snake(name) if language == "typescript" else name)
            continue
        if len(cells) != 5 or cells[0].lower() in ("concept", ""):
            continue
        if section == "behaviour":
            # Each cell names the test(s) proving the behaviour: `file::test name`.
            for language, cell in zip(LANGUAGES, cells[1:]):
                tests = re.findall(r"`([^`]+::[^`]+)`", cell)
                if not tests and not cell.lower().startswith("n/a"):
                    problems.append(f"parity.md:{number}: {language} cell of '{cells[0]}' names no test (`file::test`)")
                rows["behaviour"].extend((cells[0], language, "", t) for t in tests)
            continue
        for language, cell in zip(LANGUAGES, cells[1:]):
            if cell.lower().startswith("n/a"):
                continue
            for m in CELL.finditer(cell):
                api, test = m.group(1), m.group(2)
                if test is None:
                    problems.append(f"parity.md:{number}: {language} `{api}` names no test (`api` · `test file`)")
                    continue
                rows[section].append((cells[0], language, api, test))
    return rows, specific, problems


def find_test(language: str, test: str) -> Path | None:
    file = test.split("::")[0]
    for root in TEST_ROOTS[language]:
        candidate = root / file
        if candidate.is_file():
            return candidate
    return None


def check(text: str | None = None) -> List[str]:
    text = MATRIX.read_text() if text is None else text
    rows, specific, problems = parse_matrix(text)
    found = surfaces()
    for concept, language, _, test in rows["behaviour"]:
        path = find_test(language, test)
        if path is None:
            problems.append(f"behaviour '{concept}': {language} test file {test.split('::')[0]} not found")
        elif test.split("::", 1)[1] not in path.read_text():
            problems.append(f"behaviour '{concept}': {path.relative_to(ROOT)} has no test '{test.split('::', 1)[1]}'")
    for surface, by_language in found.items():
        listed: Dict[str, Set[str]] = {lang: set() for lang in LANGUAGES}
        for concept, language, api, test in rows[surface]:
            name = snake(api) if language == "typescript" else api
            listed[language].add(name)
            if name not in by_language[language]:
                problems.append(f"{surface}: {language} `{api}` ({concept}) is in docs/parity.md but not in the typed surface")
            path = find_test(language, test)
            if path is None:
                problems.append(f"{surface}: {language} `{api}`: test file {test.split('::')[0]} not found")
                continue
            body = path.read_text()
            if "::" in test and test.split("::", 1)[1] not in body:
                problems.append(f"{surface}: {language} `{api}`: {path.relative_to(ROOT)} has no test '{test.split('::', 1)[1]}'")
            if api.split(".")[-1].rstrip("?!") not in body:
                problems.append(f"{surface}: {language} `{api}`: {path.relative_to(ROOT)} never mentions it")
        for language in LANGUAGES:
            for name in sorted(by_language[language] - listed[language] - specific[surface][language]):
                problems.append(
                    f"{surface}: {language} has `{name}`, which docs/parity.md neither maps to the other languages "
                    "nor lists as language-specific with a reason"
                )
    return problems


def self_test() -> List[str]:
    """The check catches what it is for: a method missing from the matrix, a cell naming a method
    that does not exist, and a test that does not exist."""
    text = MATRIX.read_text()
    failures = []
    dropped = "\n".join(line for line in text.splitlines() if not line.startswith("| look a template up |"))
    if not any("get_template" in p for p in check(dropped)):
        failures.append("a method missing from the matrix was not reported")
    renamed = text.replace("`getTemplate` ·", "`fetchTemplate` ·")
    if not any("fetchTemplate" in p for p in check(renamed)):
        failures.append("a cell naming a method the surface lacks was not reported")
    retested = text.replace("test_registering_a_directory_with_one_clash_stores_nothing", "test_that_does_not_exist")
    if not any("test_that_does_not_exist" in p for p in check(retested)):
        failures.append("a test that does not exist was not reported")
    return failures


def main() -> int:
    if "--self-test" in sys.argv:
        failures = self_test()
        for f in failures:
            print(f"self-test: {f}")
        return 1 if failures else 0
    if "--list" in sys.argv:
        for surface, by_language in surfaces().items():
            for language, names in by_language.items():
                print(f"{surface} {language}: {' '.join(sorted(names))}")
        return 0
    problems = check()
    for p in problems:
        print(p)
    if problems:
        print(f"\n{len(problems)} difference(s) between the typed surfaces and docs/parity.md", file=sys.stderr)
        return 1
    print("parity: every public method of every typed surface is in docs/parity.md, each with its test")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The project's documents stand on their own: every path the architecture's layout table names exists, and no
document or module cites one the repository does not contain."""

from __future__ import annotations

import re

from tollgate.topology import ROOT

ARCHITECTURE = ROOT / "docs" / "architecture.md"


def test_the_layout_table_matches_the_tree():
    table = ARCHITECTURE.read_text().split("## Layout", 1)[1]
    paths = re.findall(r"`([\w./-]+(?:\.\w+|/))`", table)
    assert len(paths) > 40
    missing = [p for p in paths if not (ROOT / p).exists()]
    assert missing == [], f"docs/architecture.md names paths that do not exist: {missing}"


def test_every_module_of_the_shared_code_is_in_the_layout_table():
    table = ARCHITECTURE.read_text().split("## Layout", 1)[1]
    modules = [p.relative_to(ROOT).as_posix() for p in (ROOT / "shared" / "tollgate").rglob("*.py")
               if p.name not in ("__init__.py", "__main__.py")]
    absent = [m for m in modules if f"`{m}`" not in table]
    assert absent == [], f"modules the layout table does not place: {absent}"


def test_no_document_or_module_cites_a_file_the_repository_does_not_have():
    cited = re.compile(r"((?:[\w.-]+/)*(?:ARCHITECTURE|EMULATORS|STYLE|PROVENANCE|events)\.md)\b")
    texts = [ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("datasets/*.yaml"), *ROOT.rglob("shared/**/*.py"),
             *ROOT.glob("services/**/*.py"), *ROOT.glob("functions/**/*.py"), *ROOT.glob("localcloud/*.py"),
             *ROOT.glob("tests/*.py")]
    found = [f"{p.relative_to(ROOT)}: {m}" for p in texts if p.name != "test_docs.py"
             for m in cited.findall(p.read_text()) if not (ROOT / m).exists()]
    assert found == []

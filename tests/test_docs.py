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


def test_every_module_of_the_shared_code_and_the_local_cloud_is_in_the_layout_table():
    table = ARCHITECTURE.read_text().split("## Layout", 1)[1]
    modules = [p.relative_to(ROOT).as_posix() for folder in ("shared/tollgate", "localcloud")
               for p in (ROOT / folder).rglob("*.py") if p.name not in ("__init__.py", "__main__.py")]
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


def test_the_site_builds_in_strict_mode(tmp_path):
    """`make docs`: MkDocs fails on any warning (a broken link, a page missing from the nav, a generated
    reference page that cannot be built)."""
    import os
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    spec_page = (tmp_path / "site" / "reference" / "spec" / "index.html").read_text()
    assert "extra_columns" in spec_page and "primary_metric" in spec_page
    cli_page = (tmp_path / "site" / "reference" / "cli" / "index.html").read_text()
    assert "tollgate spec infer" in cli_page and "tollgate predict" in cli_page
    assert "/openapi.json" in (tmp_path / "site" / "reference" / "predictor-api" / "index.html").read_text()
    assert not list((tmp_path / "site").rglob("hooks.py"))
    pages = "".join(p.read_text() for p in (tmp_path / "site").rglob("*.html"))
    assert "fonts.googleapis.com" not in pages and "fonts.gstatic.com" not in pages   # no CDN at run time


def local_cloud_blocks(page):
    """The code blocks of a page titled "local cloud": (language, code), in order."""
    return re.findall(r'```(bash|python) title="local cloud"\n(.*?)```', page.read_text(), flags=re.S)


def test_the_readme_tour_is_the_quickstarts():
    """The README's five-minute tour runs the commands the quickstart executes (below)."""
    quickstart = "".join(code for _, code in local_cloud_blocks(ROOT / "docs" / "quickstart.md"))
    tour = (ROOT / "README.md").read_text().split("## A five-minute tour", 1)[1].split("```bash", 1)[1]
    commands = [line.split("#")[0].strip() for line in tour.split("```", 1)[0].splitlines() if line.strip()]
    assert all(command in quickstart for command in commands), commands

"""The repository's own promises: the design is in it, and the code cites only what it holds."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_design_is_in_the_repository_and_cited_from_it():
    assert (ROOT / "docs" / "design.md").exists()
    assert "docs/design.md" in (ROOT / "README.md").read_text()
    for path in [*(ROOT / "src").rglob("*.py"), *(ROOT / "tests").rglob("*.py"),
                 *(ROOT / "bench").rglob("*.py")]:
        text = path.read_text()
        assert "DESIGN" + ".md" not in text, f"{path} cites a file outside the repository"

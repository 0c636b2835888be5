"""files.py's writers: a directory replaced whole, by renames."""

from __future__ import annotations

from tunelab_bridge.files import replace_directory


def test_a_directory_is_replaced_whole_and_the_old_one_is_gone(tmp_path):
    target = tmp_path / "build"
    target.mkdir()
    (target / "old.txt").write_text("old")
    built = tmp_path / ".build-new"
    built.mkdir()
    (built / "new.txt").write_text("new")
    replace_directory(built, target)
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build"]  # nothing set aside is left behind

    again = tmp_path / ".build-first"
    again.mkdir()
    replace_directory(again, tmp_path / "fresh")
    assert (tmp_path / "fresh").is_dir() and not again.exists()

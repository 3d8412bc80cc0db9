"""Annotation lists: every bad input is one AnnotationError naming file:line and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from autox_video.data.annotations import infer_num_class, read_annotations, read_class_names, scan_videos
from autox_video.errors import AnnotationError


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    for rel in ("a.mp4", "sub/b c.avi", "sub/d.mkv"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    return tmp_path


def _list(root: Path, text: str | bytes) -> Path:
    p = root / "list.txt"
    p.write_bytes(text.encode() if isinstance(text, str) else text)
    return p


def test_reads_paths_with_spaces_and_skips_blank_lines(root: Path) -> None:
    samples = read_annotations(_list(root, "a.mp4 0\n\n  sub/b c.avi 2  \n"), root, num_class=3)
    assert [(s.path, s.label, s.line) for s in samples] == [("a.mp4", 0, 1), ("sub/b c.avi", 2, 3)]
    assert infer_num_class(samples) == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a.mp4 0\nmissing.mp4 1\n", r"list\.txt:2: video 'missing\.mp4' not found under "),
        ("../a.mp4 0\n", r"list\.txt:1: path '\.\./a\.mp4' escapes data_root; use a path relative to data_root"),
        ("/etc/a.mp4 0\n", r"list\.txt:1: path '/etc/a\.mp4' is absolute"),
        ("a.mp4 cat\n", r"list\.txt:1: label 'cat' is not an integer \(expected 'relative/path\.mp4 LABEL'\)"),
        ("a.mp4 0\na.mp4 5\n", r"list\.txt:2: label 5 outside \[0, 3\) \(num_class=3\)"),
        ("a.mp4 -1\n", r"list\.txt:1: label -1 outside \[0, "),
        ("a.mp4\n", r"list\.txt:1: no label after 'a\.mp4'"),
    ],
)
def test_each_bad_line_names_file_and_line(root: Path, text: str, message: str) -> None:
    with pytest.raises(AnnotationError, match=message):
        read_annotations(_list(root, text), root, num_class=3)


def test_non_utf8_list_says_where_and_what_to_do(root: Path) -> None:
    with pytest.raises(
        AnnotationError, match=r"list\.txt:2: not UTF-8 text \(byte 0xff at column 1\); save the list as UTF-8"
    ):
        read_annotations(_list(root, b"a.mp4 0\n\xff\xfe.mp4 1\n"), root)
    with pytest.raises(AnnotationError, match=r"list\.txt:3: not UTF-8 text \(byte 0xe9 at column 4\)"):
        read_annotations(_list(root, b"a.mp4 0\nb.mp4 1\ncaf\xe9.mp4 2\n"), root)


def test_unlabelled_lists_are_allowed_for_prediction(root: Path) -> None:
    samples = read_annotations(_list(root, "a.mp4\nsub/d.mkv\n"), root, require_labels=False)
    assert [(s.path, s.label) for s in samples] == [("a.mp4", None), ("sub/d.mkv", None)]


def test_scan_finds_every_video_sorted(root: Path) -> None:
    (root / "notes.txt").write_text("x")
    assert [s.path for s in scan_videos(root)] == ["a.mp4", "sub/b c.avi", "sub/d.mkv"]


def test_class_names_blank_and_duplicates_are_errors(tmp_path: Path) -> None:
    p = tmp_path / "classes.txt"
    p.write_text("cat\ndog\n")
    assert read_class_names(p) == ["cat", "dog"]
    p.write_text("cat\n\ndog\n")
    with pytest.raises(AnnotationError, match=r"classes\.txt:2: blank class name"):
        read_class_names(p)
    p.write_text("cat\ncat\n")
    with pytest.raises(AnnotationError, match=r"classes\.txt:2: duplicate class name 'cat'"):
        read_class_names(p)


def test_label_is_the_last_token_even_when_the_path_has_spaces_and_digits(root: Path) -> None:
    (root / "clip 2.mp4").write_bytes(b"x")
    text = "\ufeffclip 2.mp4 1\r\nclip 2.mp4\r\n"  # BOM and CRLF as Windows editors save them
    samples = read_annotations(_list(root, text), root, num_class=3, require_labels=False)
    assert [(s.path, s.label, s.line) for s in samples] == [("clip 2.mp4", 1, 1), ("clip 2.mp4", None, 2)]


@pytest.mark.parametrize("path", ["C:\\videos\\a.mp4", "\\\\server\\a.mp4", "sub/../../a.mp4"])
def test_windows_and_nested_escapes_are_refused(root: Path, path: str) -> None:
    with pytest.raises(AnnotationError, match=r"list\.txt:1: path .* (is absolute|escapes data_root)"):
        read_annotations(_list(root, f"{path} 0\n"), root)


def test_missing_list_and_missing_folder_are_named(root: Path) -> None:
    with pytest.raises(AnnotationError, match=r"nope\.txt: annotation list not found"):
        read_annotations(root / "nope.txt", root)
    with pytest.raises(AnnotationError, match=r"data_root is not a folder"):
        scan_videos(root / "nope")


def test_existence_check_can_be_skipped_for_remote_data(root: Path) -> None:
    samples = read_annotations(_list(root, "later/x.mp4 1\n"), root, check_exists=False)
    assert samples[0].path == "later/x.mp4"


def test_num_class_needs_labels_from_at_least_two_classes() -> None:
    from autox_video.data.annotations import Sample

    assert infer_num_class([Sample("a.mp4", 4, 1), Sample("b.mp4", 1, 2)]) == 5
    with pytest.raises(AnnotationError, match="no labelled videos"):
        infer_num_class([])
    with pytest.raises(AnnotationError, match="every label is 0"):
        infer_num_class([Sample("a.mp4", 0, 1)])


def test_class_names_file_must_name_something(tmp_path: Path) -> None:
    p = tmp_path / "classes.txt"
    p.write_text("\n\n")
    with pytest.raises(AnnotationError, match=r"classes\.txt: no class names"):
        read_class_names(p)
    p.write_text("cat\ndog\n\n")  # trailing blank lines are harmless
    assert read_class_names(p) == ["cat", "dog"]

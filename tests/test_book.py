"""The book builds without warnings and its pages carry what a reader needs."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow  # builds the book


@pytest.fixture(scope="module")
def html(built_book):
    return built_book("instructor")


def test_every_chapter_is_rendered_with_its_outputs(html):
    for notebook in sorted((ROOT / "notebooks").glob("[0-9]*.ipynb")):
        page = (html / "notebooks" / f"{notebook.stem}.html").read_text()
        assert "cell_output" in page, f"{notebook.stem}: no outputs rendered"
        assert "data:image/png" in page or ".png" in page, f"{notebook.stem}: no figure rendered"


def test_notebook_pages_have_a_colab_button(html):
    page = (html / "notebooks" / "02_nin_block.html").read_text()
    assert "colab.research.google.com/github/nin-course/nin-course/blob/main/notebooks/02_nin_block.ipynb" in page


def test_footer_names_the_project_not_the_template(html):
    page = (html / "book" / "intro.html").read_text()
    assert "the NiN course authors" in page and "Copyright 2023" not in page


def test_instructor_book_shows_exercises_with_solutions(html):
    page = (html / "notebooks" / "05_exercises.html").read_text()
    assert page.count('class="exercise admonition"') >= 8
    assert page.count('class="solution dropdown admonition"') >= 8
    assert "Solution to" in page and "dropdown" in page

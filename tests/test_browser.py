"""Both editions of the book as a reader sees them: every page opened in headless Chromium, offline.

Each edition is built once per run (conftest's ``built_book``, shared with test_book.py and
test_student_edition.py), served on 127.0.0.1 and every page visited once in
one browser; requests anywhere else are blocked and recorded. The tests then check what the
visits saw: formulas typeset by MathJax, images loaded, the saved ipywidgets state rendered,
Colab links, exercises and solutions, long lines wrapped, no console errors. A full-page
screenshot of every page goes to ``_build/screenshots/<edition>/`` (CI keeps it as an artifact).

Needs Chromium at /usr/bin/chromium (Debian's ``chromium``, or the path in NIN_CHROMIUM; Playwright's
own browser download is not used) and ``make web-assets``. Without Chromium or Playwright the
browser tests are skipped, except under CI (CI set), where they fail.
"""

from __future__ import annotations

import functools
import http.server
import importlib.util
import os
import threading
from contextlib import contextmanager
from pathlib import Path

import nbformat
import pytest
import yaml
from conftest import EDITIONS

from tools.setup_cell import setup_cell

ROOT = Path(__file__).resolve().parent.parent
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
CHROMIUM = Path(os.environ.get("NIN_CHROMIUM", "/usr/bin/chromium"))  # another Chromium or Chrome: set NIN_CHROMIUM
SCREENSHOTS = ROOT / "_build" / "screenshots"
WIDGET_CHAPTER = "notebooks/01_one_by_one_convolution"
EXERCISES = "notebooks/05_exercises"
VIEWPORT = {"width": 1280, "height": 900}
# Known, harmless and not ours: this Jupyter Book 1 stack (Sphinx 7.4, sphinx-thebe 0.3.1) writes
# sphinx-thebe's inline configuration script (`const THEBE_JS_URL = ...`) twice into every page's
# <head>, and the second copy throws. Thebe (live code cells) is off in this book.
IGNORED_PAGE_ERRORS = ("Identifier 'THEBE_JS_URL' has already been declared",)
pytestmark = pytest.mark.slow  # builds both editions and opens every page in a browser

# --- Building, serving and visiting ------------------------------------------------------------

class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/favicon.ico":  # the browser asks on its own; the book has none
            self.send_response(204)
            self.end_headers()
            return
        super().do_GET()


@contextmanager
def serve(folder: Path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser():
    missing = [what for what, found in ((f"Chromium at {CHROMIUM}", CHROMIUM.exists()),
                                         ("playwright", importlib.util.find_spec("playwright"))) if not found]
    if missing and not os.environ.get("CI"):  # in CI a missing browser is a failure, not a skip
        pytest.skip(f"no {' and no '.join(missing)}: apt-get install chromium fonts-dejavu-core; pip install playwright")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield browser
        browser.close()


# Run in the page once it has loaded: wait for MathJax's first typeset, the images and the fonts.
SETTLE = """async () => {
    const mathjax = window.MathJax;
    if (mathjax && mathjax.startup && mathjax.startup.promise) await mathjax.startup.promise;
    await Promise.all([...document.images].filter(i => !i.complete)
        .map(i => new Promise(done => { i.onload = i.onerror = done; })));
    await document.fonts.ready;
}"""
VIEWS = 'script[type="application/vnd.jupyter.widget-view+json"]'
# The embed manager renders each saved view into a div.widget-subarea inserted before its <script>.
WIDGETS_RENDERED = f"""() => [...document.querySelectorAll('{VIEWS}')].every(s =>
    s.previousElementSibling && s.previousElementSibling.classList.contains('widget-subarea')
    && s.previousElementSibling.querySelector('.jupyter-widgets'))"""
# What a reader sees, measured in the page.
FACTS = f"""() => {{
    const article = document.querySelector('article.bd-article');
    // Visible prose: text outside code, scripts and typeset formulas (code may hold a backslash).
    const skip = new Set(['PRE', 'CODE', 'SCRIPT', 'STYLE', 'TEXTAREA', 'MJX-CONTAINER']);
    const prose = [];
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT, {{
        acceptNode(node) {{
            for (let e = node.parentElement; e; e = e.parentElement) if (skip.has(e.tagName)) return NodeFilter.FILTER_REJECT;
            return NodeFilter.FILTER_ACCEPT;
        }}}});
    while (walker.nextNode()) prose.push(walker.currentNode.nodeValue);
    const section = article && article.querySelector('section');
    // Accessible names, as a screen reader gets them: aria-label, aria-labelledby or a <label>.
    const text = value => (value || '').trim();
    const named = e => text(e.getAttribute('aria-label'))
        || text(e.getAttribute('aria-labelledby')).split(/\\s+/).filter(Boolean)
            .some(id => document.getElementById(id) && text(document.getElementById(id).textContent))
        || [...(e.labels || [])].some(label => text(label.textContent));
    return {{
        url: location.href,
        math_nodes: document.querySelectorAll('.math').length,
        typeset: document.querySelectorAll('mjx-container').length,
        math_errors: document.querySelectorAll('mjx-merror').length,
        raw_tex: (prose.join(' ').match(/\\\\[(\\[]/g) || []).length,
        broken_images: [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src),
        images: document.images.length,
        // Alt text that is missing, empty, or a file name or path (Sphinx's default: the image's path).
        images_without_alt: [...document.images].map(i => text(i.getAttribute('alt')))
            // a path has no spaces: "T-shirt/top" in a sentence is a class name, not a file
            .filter(alt => !alt || (alt.includes('/') && !/\\s/.test(alt))
                           || /\\.(png|svg|jpe?g|gif)$/i.test(alt)),
        // Sliders: native range inputs and ARIA ones (ipywidgets 8 draws noUiSlider's role="slider" handles).
        unnamed_sliders: [...document.querySelectorAll('input[type=range], [role=slider]')].filter(e => !named(e))
            .map(e => e.closest('.widget-slider') ? e.closest('.widget-slider').innerText.trim() : e.outerHTML.slice(0, 120)),
        slider_count: document.querySelectorAll('input[type=range], [role=slider]').length,
        colab_links: [...document.querySelectorAll('a[href*="colab.research.google.com"]')].map(a => a.href),
        views: document.querySelectorAll('{VIEWS}').length,
        widgets: document.querySelectorAll('.jupyter-widgets').length,
        sliders: [...document.querySelectorAll('.widget-slider')].map(e => e.innerText),
        exercises: document.querySelectorAll('.exercise.admonition').length,
        solutions: document.querySelectorAll('.solution.admonition').length,
        first_element: section && section.firstElementChild ? section.firstElementChild.tagName : null,
        first_line: article ? article.innerText.trim().split('\\n')[0].trim() : null,
        text: document.body.innerText,
        overflowing: [...document.querySelectorAll('article pre')]
            .filter(p => p.clientWidth > 0 && p.scrollWidth > p.clientWidth + 1)
            .map(p => p.innerText.split('\\n')[0].slice(0, 80)),
        page_width: document.documentElement.scrollWidth,
        window_width: window.innerWidth,
    }};
}}"""


def visit_all(browser, html: Path, base: str, shots: Path) -> tuple[dict, list[str]]:
    """Open every page of the build at ``base``; returns (facts per page, requests that were blocked)."""
    blocked: list[str] = []

    def route(request_route):
        if request_route.request.url.startswith(base):
            request_route.continue_()
        else:
            blocked.append(request_route.request.url)
            request_route.abort()

    context = browser.new_context(viewport=VIEWPORT)
    context.route("**/*", route)
    pages = {}
    for path in sorted(html.rglob("*.html")):
        name = path.relative_to(html).with_suffix("").as_posix()
        if name.startswith(("_static/", "_sources/", "_images/")):
            continue
        page = context.new_page()
        errors, failed = [], []
        page.on("console", lambda message, errors=errors: errors.append(f"console: {message.text} ({message.location.get('url')})")
                if message.type == "error" else None)
        page.on("pageerror", lambda error, errors=errors: errors.append(f"page error: {error}"))
        page.on("response", lambda response, failed=failed: failed.append(f"{response.status} {response.url}")
                if response.status >= 400 else None)
        page.goto(base + path.relative_to(html).as_posix(), wait_until="load")
        if name == "index":  # a redirect to the first page
            page.wait_for_url("**/book/intro.html")
            page.wait_for_load_state("load")
        page.evaluate(SETTLE)
        widgets_rendered = True
        if page.locator(VIEWS).count():
            try:
                page.wait_for_function(WIDGETS_RENDERED, timeout=20_000)
            except Exception:  # noqa: BLE001 - reported by the widget test
                widgets_rendered = False
        facts = page.evaluate(FACTS)
        facts.update(errors=[e for e in errors if not any(known in e for known in IGNORED_PAGE_ERRORS)],
                     failed_responses=failed, widgets_rendered=widgets_rendered)
        shot = shots / f"{name.replace('/', '__')}.png"
        page.screenshot(path=str(shot), full_page=True)
        facts["screenshot"] = shot
        pages[name] = facts
        page.close()
    context.close()
    return pages, blocked


@pytest.fixture(scope="module", params=list(EDITIONS))
def edition(request, browser, built_book):
    """One edition built (once per run, shared with the other modules), served and visited:
    name, source folder, html folder, pages, blocked."""
    name, source = request.param, EDITIONS[request.param]
    html = built_book(name)
    shots = SCREENSHOTS / name
    shots.mkdir(parents=True, exist_ok=True)
    for old in shots.glob("*.png"):
        old.unlink()
    with serve(html) as base:
        pages, blocked = visit_all(browser, html, base, shots)
    return {"name": name, "source": source, "html": html, "pages": pages, "blocked": blocked}


def notebook_pages(edition) -> list[str]:
    return [f"notebooks/{p.stem}" for p in sorted((edition["source"] / "notebooks").glob("[0-9]*.ipynb"))]


# --- What the reader sees ------------------------------------------------------------------------

def test_every_page_was_visited_and_has_a_screenshot(edition):
    pages = edition["pages"]
    expected = {"index", "genindex", "search", "book/intro", "book/running", "book/references", *notebook_pages(edition)}
    if edition["name"] == "instructor":
        expected.add("book/instructors")
    assert expected <= set(pages), sorted(expected - set(pages))
    assert pages["index"]["url"].endswith("/book/intro.html")
    for name, facts in pages.items():
        assert facts["screenshot"].stat().st_size > 10_000, name


def test_no_request_leaves_127_0_0_1(edition):
    assert not edition["blocked"], sorted(set(edition["blocked"]))


def test_no_console_errors_and_no_missing_files(edition):
    problems = {name: facts["errors"] + facts["failed_responses"] for name, facts in edition["pages"].items()}
    assert not {name: found for name, found in problems.items() if found}


def test_formulas_are_typeset(edition):
    pages = edition["pages"]
    for name, facts in pages.items():
        assert facts["raw_tex"] == 0, f"{name}: {facts['raw_tex']} formulas left as raw TeX"
        assert facts["math_errors"] == 0, f"{name}: {facts['math_errors']} MathJax errors"
        if facts["math_nodes"]:
            assert facts["typeset"] >= facts["math_nodes"], f"{name}: {facts['typeset']} of {facts['math_nodes']} typeset"
    assert pages[WIDGET_CHAPTER]["typeset"] >= 20


def test_every_image_loads(edition):
    broken = {name: facts["broken_images"] for name, facts in edition["pages"].items() if facts["broken_images"]}
    assert not broken
    assert sum(facts["images"] for facts in edition["pages"].values()) >= 5


def test_every_image_has_alt_text_that_describes_it(edition):
    """Alt text, not the file path Sphinx falls back to (a figure's is set in its cell's metadata:
    ``mystnb: {image: {alt: ...}}``)."""
    missing = {name: facts["images_without_alt"] for name, facts in edition["pages"].items()
               if facts["images_without_alt"]}
    assert not missing, f"images without alt text, or with a file name as alt text: {missing}"


def test_every_slider_has_an_accessible_name(edition):
    """Every range input and ARIA slider is named by aria-label, aria-labelledby or a <label>."""
    unnamed = {name: facts["unnamed_sliders"] for name, facts in edition["pages"].items() if facts["unnamed_sliders"]}
    assert not unnamed, f"sliders without an accessible name: {unnamed}"
    assert edition["pages"][WIDGET_CHAPTER]["slider_count"] >= 1  # the widget chapter's sliders were seen


def test_notebook_pages_start_with_the_chapter_title_not_the_setup_cell(edition):
    for name in notebook_pages(edition):
        facts = edition["pages"][name]
        notebook = nbformat.read(edition["source"] / f"{name}.ipynb", as_version=4)
        heading = next(c.source for c in notebook.cells if c.cell_type == "markdown").splitlines()[0]
        assert heading.startswith("# "), f"{name}: the first markdown cell is not a title"
        assert facts["first_element"] == "H1" and facts["first_line"] == heading[2:].strip(), (name, facts["first_line"])
        assert setup_cell().splitlines()[0] not in facts["text"], f"{name}: the setup cell is on the page"


def test_colab_links_open_the_pages_own_notebook(edition):
    repository = CONFIG["repository"]
    owner_repo = repository["url"].removeprefix("https://github.com/").strip("/")
    folder = "student/notebooks" if edition["name"] == "student" else "notebooks"
    for name in notebook_pages(edition):
        stem = name.split("/")[-1]
        expected = f"https://colab.research.google.com/github/{owner_repo}/blob/{repository['branch']}/{folder}/{stem}.ipynb"
        links = edition["pages"][name]["colab_links"]
        assert links and set(links) == {expected}, (name, links)
        assert (ROOT / folder / f"{stem}.ipynb").is_file()


def test_saved_widgets_render(edition):
    pages = edition["pages"]
    for name, facts in pages.items():
        assert facts["widgets_rendered"], f"{name}: {facts['views']} saved widget views, not all rendered"
    chapter = pages[WIDGET_CHAPTER]
    assert chapter["views"] >= 1 and chapter["widgets"] >= 1 and chapter["sliders"]
    # The sliders show the descriptions the notebook saved in its widget state.
    notebook = nbformat.read(edition["source"] / f"{WIDGET_CHAPTER}.ipynb", as_version=4)
    state = notebook.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    saved = [m["state"]["description"] for m in state.values() if m["model_name"] == "IntSliderModel"]
    shown = "\n".join(chapter["sliders"])
    assert saved and all(description in shown for description in saved), (saved, chapter["sliders"])


def test_exercises_everywhere_solutions_only_for_instructors(edition):
    facts = edition["pages"][EXERCISES]
    assert facts["exercises"] >= 1
    if edition["name"] == "instructor":
        assert facts["solutions"] >= 1 and "Solution to" in facts["text"]
    else:
        assert facts["solutions"] == 0 and "Solution to" not in facts["text"]


def test_long_lines_wrap_instead_of_running_off_the_page(edition):
    for name, facts in edition["pages"].items():
        assert not facts["overflowing"], f"{name}: code or output wider than its box: {facts['overflowing'][:3]}"
        assert facts["page_width"] <= facts["window_width"], f"{name}: the page scrolls sideways"

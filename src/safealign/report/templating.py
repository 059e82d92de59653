"""The report's page template, its fragments and its CSS / JS are files under ``templates/``
(declared as ``input:`` of the report rule through ``safealign.headline.report_resources``).

Rendering: jinja2 with autoescape on. The page's sections are HTML the report's Python builds
(pandas tables, escaped text), handed over as ``Markup``; text goes through the ``esc`` filter
(``html.escape``), and the CSS / JS through :func:`resource`.
"""

from __future__ import annotations

import html
from functools import cache
from importlib import resources
from typing import Any


def resource(name: str):
    """A file under ``templates/`` as trusted markup (the CSS and JS the page inlines)."""
    from markupsafe import Markup

    return Markup(resources.files(__package__).joinpath("templates", name).read_text(encoding="utf-8"))


@cache
def environment():
    import jinja2
    from markupsafe import Markup

    env = jinja2.Environment(loader=jinja2.PackageLoader(__package__, "templates"), autoescape=True,
                             keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    env.filters["esc"] = lambda value: Markup(html.escape("" if value is None else str(value)))
    return env


def render_template(name: str, **values: Any) -> str:
    """Template ``templates/<name>`` rendered with ``values``; str values are autoescaped
    unless they are ``Markup`` (HTML the report built)."""
    return environment().get_template(name).render(**values)

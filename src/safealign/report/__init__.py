"""The one self-contained HTML report, one section each (SECTIONS): the paper's claims checked on
this run with CIs, the method x benchmark table (CIs, best per column, significant differences from
the base model), paired comparisons, seaborn plots (inline PNG, also written to --plots-dir for
Snakemake's own report), seeds, judges, a responses browser, cost and provenance.

It opens from disk with no network: no external resource, a Content-Security-Policy that forbids
any fetch, every model and dataset text HTML-escaped (and, in the embedded JSON, <, > and & as
\\u escapes, so a '</script>' in a response cannot end the script element).

    python -m safealign.report --params JSON --metrics results/metrics.csv ... --out report.html
"""

from __future__ import annotations

from .browser import MAX_PROMPTS_PER_BENCHMARK, browser_data, browser_html, embed_json
from .cost import cost_tables
from .page import SECTIONS, render
from .provenance import effective_hyperparameters_table, git_commit, library_table, provenance_html, variant_metas
from .sections import (
    ALPHA,
    comparisons_html,
    definitions_html,
    fmt_ci,
    headline_claims,
    headline_html,
    headline_table,
    judges_html,
    method_table_html,
    reference_table,
    variant_labels,
)

__all__ = ["ALPHA", "MAX_PROMPTS_PER_BENCHMARK", "SECTIONS", "browser_data", "browser_html", "comparisons_html",
           "cost_tables", "definitions_html", "effective_hyperparameters_table", "embed_json", "fmt_ci",
           "git_commit", "headline_claims", "headline_html", "headline_table", "judges_html", "library_table",
           "method_table_html", "provenance_html", "reference_table", "render", "variant_labels", "variant_metas"]

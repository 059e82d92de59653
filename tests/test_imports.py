"""Import hygiene: the steps that do no model work never load torch, transformers or TRL.

bench/run.py (item 1) measures every entry point's real job with ``python -X importtime``; this
test keeps the module-level part of that promise in the suite (no timing asserted).
"""

import subprocess
import sys

from conftest import REPO

NO_MODEL_STEPS = ("safealign.metrics", "safealign.aggregate", "safealign.report", "safealign.report.__main__",
                  "safealign.headline", "safealign.data.preference",
                  "safealign.data.benchmark", "safealign.world.data", "safealign.world.__main__",
                  "safealign.judge.refusal", "safealign.judge.agreement", "safealign.grid", "safealign.configload",
                  "safealign.checks", "safealign.planning", "safealign.specs", "safealign.warm")
MODEL_LIBRARIES = ("torch", "transformers", "trl", "peft", "sklearn", "datasets")


def test_no_model_step_imports_a_model_library():
    code = ("import importlib, sys\n"
            f"for m in {NO_MODEL_STEPS!r}: importlib.import_module(m)\n"
            f"print(sorted(set({MODEL_LIBRARIES!r}) & {{k.split('.')[0] for k in sys.modules}}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "[]", out.stdout


def test_stages_that_skip_the_warm_servers_start_are_no_model_steps():
    """A NO_WAIT stage runs cold while the warm server imports: it must not need those imports."""
    from safealign._warm_client import NO_WAIT

    for stage in NO_WAIT:
        module = stage.split()[0]
        assert {module, f"{module}.__main__"} & set(NO_MODEL_STEPS), stage


def test_parsing_the_workflow_does_not_import_the_report():
    """dag and checks (what common.smk imports at parse time) read the report's config through
    safealign.headline; the report package (pandas, seaborn, jinja2) loads only in its own job."""
    code = ("import sys, safealign.dag, safealign.checks, safealign.headline\n"
            "print(sorted(k for k in sys.modules if k == 'safealign.report' or k.startswith('safealign.report.')"
            " or k.split('.')[0] in ('jinja2', 'pandas', 'seaborn')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "[]", out.stdout

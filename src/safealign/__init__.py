"""safealign: preference-optimization safety alignment as a Snakemake workflow."""

import os as _os
import sys as _sys

__version__ = "0.1.0"

# `python -m safealign.<stage>` in a local Snakemake run: run the stage in a fork of the warm
# server, which has torch, transformers and TRL imported already (safealign.warm).
if _sys.argv[:1] == ["-m"] and _os.environ.get("SAFEALIGN_WARM", "0") != "0":
    from ._warm_client import delegate as _delegate

    _delegate()

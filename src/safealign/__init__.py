"""safealign: preference-optimization safety alignment as a Snakemake workflow."""

__version__ = "0.1.0"

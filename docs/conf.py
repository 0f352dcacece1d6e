"""Sphinx configuration of Spike's documentation (``make docs``)."""

import os
import shutil
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # the checkout's spike, not an installed one
sys.path.insert(0, str(DOCS / "_ext"))

import spike

project = "Spike"
author = "the Spike developers"
copyright = "the Spike developers"
version = release = spike.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
    "spike_docs",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_generated"]
templates_path = ["_templates"]

# Docstrings use single backticks for Python objects, as nengo's do.
default_role = "py:obj"

autosummary_generate = True
# made afresh by every build, so a module that was moved or removed leaves no page
shutil.rmtree(DOCS / "api" / "generated", ignore_errors=True)
autosummary_imported_members = False
autodoc_member_order = "bysource"
autodoc_default_options = {"show-inheritance": True}

numpydoc_show_class_members = False
numpydoc_xref_param_type = False

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

html_theme = "alabaster"
html_title = f"Spike {release}"
html_static_path = []
html_theme_options = {"description": "Nengo models on many worker processes and hosts"}

# Nothing reaches the network while building (intersphinx is not used).
os.environ.setdefault("SPIKE_LOG_LEVEL", "WARNING")

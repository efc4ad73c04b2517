"""Server-side JavaScript: scripts, libraries, JS-implemented methods, personalization."""

from .workflow import run_workflow_script

__all__ = ["run_workflow_script"]

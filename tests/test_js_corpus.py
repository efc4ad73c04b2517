"""Scripts in the style of Campaign's data-oriented API documentation run unchanged (tests/js_corpus)."""

from __future__ import annotations

from pathlib import Path

import pytest

from opencampaign.scripting.api import run_script

from .test_js_helpers import ADMIN, CORPUS, make_instance

SCRIPTS = sorted(CORPUS.glob("*.js"))
PREFIX = {"info": "", "verbose": "", "warning": "WARNING: ", "error": "ERROR: "}


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    inst = make_instance(tmp_path_factory.mktemp("jscorpus"))
    yield inst
    inst.close()


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_corpus_script(instance, script: Path) -> None:  # noqa: ANN001
    result = run_script(instance, script.read_text(), ADMIN)
    assert result.error is None, result.error
    logs = [PREFIX[e.level] + e.message for e in result.logs]
    assert logs == script.with_suffix(".log").read_text().splitlines()

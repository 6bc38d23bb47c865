"""Privacy checks of a configuration, run while the workflow parses (before any job): a salt is set
(``ctvlp.core.salt.salt_problem``) and no report text goes to an LLM endpoint off the site
(``ctvlp.text.llm.endpoint_problem``). Here, above both ``core`` and ``text``, so neither imports the other's checks."""

from __future__ import annotations

from collections.abc import Mapping

from ctvlp.core.salt import salt_problem
from ctvlp.text.llm import endpoint_problem
from ctvlp.text.stage import needs_llm


def config_privacy_problems(config: Mapping) -> list[str]:
    """What stops a run before any job, for privacy: no salt (``privacy``), and report text that would go to an
    LLM endpoint off the site (``text.llm.base_url`` when ``text.labeler: llm`` or ``text.translate`` is set; see
    ``ctvlp.text.llm.endpoint_problem``)."""
    problems = [p for p in [salt_problem(config.get("privacy") or {})] if p]
    text = config.get("text") or {}
    if needs_llm(text):
        problem = endpoint_problem(text.get("llm") or {})
        if problem:
            problems.append(problem)
    return problems

"""Rule-based answer checks: read the answer a model stated and judge it.

``verify(text, question)`` returns a :class:`Verdict` (correct True/False, or None when no
answer can be found), ``extract_answer(text, question)`` the normalized answer alone. One
:class:`Verifier` per task type, registered by name: ``multiple_choice`` (choice.py),
``yes_no`` (yesno.py), ``numeric`` (numeric.py), ``exact`` and ``span`` (text.py). A new task
type is one new class decorated with ``@register_verifier("name")``.
"""

import sys
import types
from typing import Any

from meds3.verify import choice, numeric, text, yesno  # noqa: F401  (registers the verifiers)
from meds3.verify.api import extract_answer, verify
from meds3.verify.choice import MultipleChoiceVerifier
from meds3.verify.core import VERIFIERS, Extraction, Verdict, Verifier, get_verifier, register_verifier
from meds3.verify.numeric import NumericVerifier
from meds3.verify.text import ExactVerifier, SpanVerifier, token_f1
from meds3.verify.yesno import YesNoVerifier

__all__ = ["VERIFIERS", "ExactVerifier", "Extraction", "MultipleChoiceVerifier", "NumericVerifier",
           "SpanVerifier", "Verdict", "Verifier", "YesNoVerifier", "extract_answer", "get_verifier",
           "register_verifier", "token_f1", "verify"]


class _CallableModule(types.ModuleType):
    """This package, callable as :func:`verify`: ``meds3.verify`` is both the package and the
    public API's ``meds3.verify(text, question)`` (the package attribute wins over a function
    of the same name once the package is imported, so the package itself answers the call)."""

    def __call__(self, output: object, question: Any, **options: Any) -> Verdict:
        return verify(output, question, **options)


sys.modules[__name__].__class__ = _CallableModule
